"""lmfast.agents: ReAct / chain-of-thought agents with tool calling over LMFast generation.

Installed under `lmfast.` (not as a bare `agents` package) so it never shadows openai-agents.
"""

from lmfast.agents.code import CodeAgent
from lmfast.agents.data_agent import DataAgent, DataTools
from lmfast.agents.mcp_client import MCPToolError, MCPToolset
from lmfast.agents.models import AgentError, AgentModel, LocalModel, OpenAIModel
from lmfast.agents.react import Agent, AgentEvent, AgentResult
from lmfast.agents.sandbox import Sandbox, SandboxLimits, SandboxResult
from lmfast.agents.thinking import ThinkingAgent, ThinkingResult
from lmfast.agents.tools import Tool, ToolArgumentError, ToolDefinitionError, tool

__all__ = [
    "Agent",
    "AgentError",
    "AgentEvent",
    "AgentModel",
    "AgentResult",
    "CodeAgent",
    "DataAgent",
    "DataTools",
    "LocalModel",
    "MCPToolError",
    "MCPToolset",
    "OpenAIModel",
    "Sandbox",
    "SandboxLimits",
    "SandboxResult",
    "ThinkingAgent",
    "ThinkingResult",
    "Tool",
    "ToolArgumentError",
    "ToolDefinitionError",
    "tool",
]
