"""The platform's orchestration: study spec, plan, driver, stores, reports and the ``iel`` command.

Importing it first (the ``iel`` entry point does) installs :func:`orchestrator.early_signals.install`: a
Ctrl-C that arrives while the heavy libraries are still importing is remembered, so that a library which
swallows the ``KeyboardInterrupt`` at import time cannot make a submit run on as if nothing happened.
"""

from orchestrator import early_signals

early_signals.install()
