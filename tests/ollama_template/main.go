// Renders a Modelfile TEMPLATE the way Ollama's chat endpoint does (server/routes.go ChatHandler and
// template/template.go in ollama/ollama): the Modelfile's SYSTEM becomes the first message when the request
// has none, consecutive messages of one role are merged, every system message is joined into .System, and
// Go's text/template runs with missingkey=zero over .System and .Messages (Role, Content).
//
// Input on stdin: a JSON list of {"template", "system", "messages": [{"role", "content"}]}.
// Output: a JSON list of the rendered prompts, in the same order.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
	"text/template/parse"
)

type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type Case struct {
	Template string    `json:"template"`
	System   string    `json:"system"`
	Messages []Message `json:"messages"`
}

var funcs = template.FuncMap{
	"json": func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	},
}

// identifiers lists the field and variable names a template uses (Ollama's template.Identifiers).
func identifiers(n parse.Node) []string {
	switch n := n.(type) {
	case *parse.ListNode:
		var names []string
		for _, c := range n.Nodes {
			names = append(names, identifiers(c)...)
		}
		return names
	case *parse.ActionNode:
		return identifiers(n.Pipe)
	case *parse.IfNode:
		return identifiers(&n.BranchNode)
	case *parse.RangeNode:
		return identifiers(&n.BranchNode)
	case *parse.WithNode:
		return identifiers(&n.BranchNode)
	case *parse.BranchNode:
		names := identifiers(n.Pipe)
		for _, l := range []*parse.ListNode{n.List, n.ElseList} {
			if l != nil {
				names = append(names, identifiers(l)...)
			}
		}
		return names
	case *parse.PipeNode:
		var names []string
		for _, c := range n.Cmds {
			for _, a := range c.Args {
				names = append(names, identifiers(a)...)
			}
		}
		return names
	case *parse.FieldNode:
		return n.Ident
	case *parse.VariableNode:
		return n.Ident
	}
	return nil
}

// collate merges consecutive messages of one role and joins the system messages (Ollama's collate).
func collate(msgs []Message) (string, []*Message) {
	var system []string
	var collated []*Message
	for i := range msgs {
		if msgs[i].Role == "system" {
			system = append(system, msgs[i].Content)
		}
		if len(collated) > 0 && collated[len(collated)-1].Role == msgs[i].Role && msgs[i].Role != "tool" {
			collated[len(collated)-1].Content += "\n\n" + msgs[i].Content
		} else {
			collated = append(collated, &msgs[i])
		}
	}
	return strings.Join(system, "\n\n"), collated
}

func render(c Case) (string, error) {
	tmpl, err := template.New("").Option("missingkey=zero").Funcs(funcs).Parse(c.Template)
	if err != nil {
		return "", err
	}
	usesMessages := false
	for _, name := range identifiers(tmpl.Tree.Root) {
		usesMessages = usesMessages || strings.ToLower(name) == "messages"
	}
	if !usesMessages {
		return "", fmt.Errorf("the template does not use .Messages (Ollama would take its legacy path)")
	}
	msgs := c.Messages
	if len(msgs) > 0 && msgs[0].Role != "system" && c.System != "" {
		msgs = append([]Message{{Role: "system", Content: c.System}}, msgs...)
	}
	system, collated := collate(msgs)
	var out strings.Builder
	err = tmpl.Execute(&out, map[string]any{
		"System":     system,
		"Messages":   collated,
		"Tools":      nil,
		"Response":   "",
		"Think":      false,
		"IsThinkSet": false,
	})
	return out.String(), err
}

func main() {
	var cases []Case
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		fmt.Fprintln(os.Stderr, "bad input:", err)
		os.Exit(2)
	}
	results := make([]string, len(cases))
	for i, c := range cases {
		text, err := render(c)
		if err != nil {
			fmt.Fprintf(os.Stderr, "case %d: %v\n", i, err)
			os.Exit(1)
		}
		results[i] = text
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
