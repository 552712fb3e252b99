"""The TUI starts on an empty queue, shows its queue screen for a second and quits with ``q``.

Run by ``just check-core`` with the core install (no training stack): ``python tui_smoke.py JOBS_DIR``.
"""

import asyncio
import sys
from pathlib import Path

from runner.ship.reach import ship_host
from runner.store import Store
from tui.app import TuneqApp
from tui.context import TuiContext

HEAVY = ("torch", "transformers", "llama_cpp", "numpy", "runner.pipeline")


async def main(jobs: Path) -> None:
    with Store() as store:
        app = TuneqApp(TuiContext(store, jobs.resolve(), ship_host(store.path.parent)))
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(1.0)
            assert type(app.screen).__name__ == "QueueScreen", app.screen
            await pilot.press("q")
        assert app.return_code == 0, app.return_code
    loaded = [name for name in HEAVY if name in sys.modules]
    assert not loaded, f"the TUI loaded {loaded}"
    print("tui: started, showed the queue, quit")


asyncio.run(main(Path(sys.argv[1])))
