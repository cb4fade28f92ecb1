"""Progress bars on stderr (silent with ``--quiet``)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


class Progress:
    """One bar per phase of a run; every method is a no-op when quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._bar: tqdm[Any] | None = None

    def phase(self, name: str, total: float, unit: str = "it") -> None:
        """Close the current bar and open one for the next phase."""
        self.close()
        if not self.quiet:
            self._bar = tqdm(
                total=total, desc=name, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True
            )

    def update(self, n: float = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def set_postfix(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def note(self, text: str) -> None:
        """A line on stderr that does not break the bar."""
        if not self.quiet:
            tqdm.write(text, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
