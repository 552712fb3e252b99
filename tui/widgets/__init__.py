"""Thin views: each widget renders what a screen hands it and reads nothing itself."""
