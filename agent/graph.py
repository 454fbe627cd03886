"""The agent's graph: the whole flow in one place. Nodes live in agent/nodes.py; the one branching point, after
plan, is routed by :func:`route_decision` below.

    START -> bootstrap -> plan -+-> generate -> plan
                                +-> train -> evaluate -> plan
                                +-> evaluate -> plan
                                +-> refit -> plan   (the final refit of the best recipe, when configured)
                                +-> submit -> plan
                                +-> finish -> END   (the decision was stop)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore

from agent import nodes
from agent.context import RunContext
from agent.state import AgentInput, AgentState, DecisionRecord

PlanRoute = Literal["generate", "train", "evaluate", "refit", "submit", "finish"]
PLAN_ROUTES: tuple[PlanRoute, ...] = ("generate", "train", "evaluate", "refit", "submit", "finish")


def route_decision(state: AgentState) -> PlanRoute:
    """After plan: the node that carries out the decision just taken; stop finishes the run."""
    action = DecisionRecord.model_validate(state["pending"]).decision.action
    return "finish" if action == "stop" else action


#: The graph's nodes by name (agent/nodes.py).
NODES: dict[str, nodes.GraphNode] = {"bootstrap": nodes.bootstrap, "plan": nodes.plan, "generate": nodes.generate,
                                     "train": nodes.train, "evaluate": nodes.evaluate, "refit": nodes.refit,
                                     "submit": nodes.submit, "finish": nodes.finish}
#: Wraps a node before it is added (LangGraph Studio's graph builds the run context in it: agent/studio.py).
NodeBinder = Callable[[str, nodes.GraphNode], Any]


def build_graph(context_schema: type[Any] = RunContext,
                bind: NodeBinder | None = None) -> StateGraph[AgentState, Any, AgentInput, AgentState]:
    builder = StateGraph(AgentState, context_schema=context_schema, input_schema=AgentInput)
    for name, step in NODES.items():
        builder.add_node(name, bind(name, step) if bind is not None else step)
    builder.add_edge(START, "bootstrap")
    builder.add_edge("bootstrap", "plan")
    builder.add_conditional_edges("plan", route_decision, list(PLAN_ROUTES))
    builder.add_edge("generate", "plan")
    builder.add_edge("train", "evaluate")
    builder.add_edge("evaluate", "plan")
    builder.add_edge("refit", "plan")
    builder.add_edge("submit", "plan")
    builder.add_edge("finish", END)
    return builder


def compile_graph(checkpointer: BaseCheckpointSaver | None = None, store: BaseStore | None = None) -> Any:
    return build_graph().compile(checkpointer=checkpointer, store=store, name="synthgen-agent")


def recursion_limit(max_iterations: int) -> int:
    """Loop guard: bootstrap + finish + per round (plan, generate, plan, train, evaluate) + training on the
    originals, refit, submit and slack."""
    return 16 + 6 * (max_iterations + 2)
