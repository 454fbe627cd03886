"""SynthGen Agent: the LangGraph state machine and everything about running it."""

import os

# OpenMP threads that spin while waiting make torch many times slower as soon as another busy process shares the
# cores (measured here: greedy decoding 3.9x slower with 2 spinning threads next to one other busy process).
# Sleeping waiters cost little when the machine is ours alone. Set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
