"""The graph as LangGraph Studio (``langgraph dev``) loads it: compiled without a checkpointer, since the LangGraph
API server brings its own. Running it there needs a RunContext (toolbox, planner, trace), which the CLI builds;
Studio is for seeing the graph and stepping through recorded states."""

from __future__ import annotations

from agent.graph import build_graph

graph = build_graph().compile(name="synthgen-agent")
