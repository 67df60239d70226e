// Drives LMFast's MCP server with the official TypeScript tasks client
// (@modelcontextprotocol/ext-tasks over @modelcontextprotocol/client v2), over stdio.
// Used by tests/test_mcp_tasks.py.
//
//   node tasks_client.mjs run    ARGS_JSON         start a tool call, follow it to the end
//   node tasks_client.mjs cancel ARGS_JSON         start one, cancel it once it is working
//   node tasks_client.mjs handoff ARGS_JSON        start one, print a resumable reference, exit
//   node tasks_client.mjs resume  REFERENCE_JSON   resume a reference (new client, new server)
//
// ARGS_JSON is {"tool": ..., "arguments": {...}}. The server command is LMFAST_MCP_COMMAND
// (a JSON array). Each mode prints one JSON line: what the client saw.
import { Client } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";
import { createTaskSessionFromClient } from "@modelcontextprotocol/ext-tasks/client";

const [mode, payload] = process.argv.slice(2);
const [command, ...args] = JSON.parse(process.env.LMFAST_MCP_COMMAND);
const clientInfo = { name: "lmfast-tasks-interop", version: "1.0.0" };

const transport = new StdioClientTransport({ command, args, env: process.env, stderr: "inherit" });
const client = new Client(clientInfo, {
  capabilities: {},
  versionNegotiation: { mode: { pin: "2026-07-28" } },
});
await client.connect(transport);

// The SDK client's codecs do not know task-shaped results, so ext-tasks sends its task
// traffic through a host-owned raw dispatch: here, the same stdio pipe, with responses
// picked out by id before the SDK client sees them.
const pending = new Map();
const sdkOnMessage = transport.onmessage;
transport.onmessage = (message, extra) => {
  if (message && pending.has(message.id)) {
    const resolve = pending.get(message.id);
    pending.delete(message.id);
    resolve(
      "error" in message
        ? { kind: "error", error: message.error }
        : { kind: "result", result: message.result },
    );
    return;
  }
  sdkOnMessage?.(message, extra);
};
let rawId = 0;
const rawDispatch = (request) =>
  new Promise((resolve, reject) => {
    const id = `raw-${++rawId}`;
    pending.set(id, resolve);
    transport.send({ ...request, jsonrpc: "2.0", id }).catch(reject);
  });

// Confirmations (input_required before a long run starts) are answered with
// LMFAST_TEST_CONFIRM ("yes" or "no"), and recorded.
const asked = [];
const onInputRequest = async (request) => {
  asked.push(request.params?.message ?? request.kind);
  const proceed = process.env.LMFAST_TEST_CONFIRM === "yes";
  return { action: "accept", content: { proceed } };
};

const session = createTaskSessionFromClient(client, {
  endpointId: "lmfast-stdio",
  onInputRequest,
  rawDispatch,
  v2RequestFraming: {
    protocolVersion: client.getNegotiatedProtocolVersion?.() ?? "2026-07-28",
    clientInfo,
    clientCapabilities: {},
  },
});

const statuses = [];
const onEvent = (event) => {
  if (event.type === "task") statuses.push([event.task.status, event.task.statusMessage ?? ""]);
};
const outcomeOf = ({ outcome }) => ({
  status: outcome.status,
  result: outcome.status === "completed" ? outcome.result : undefined,
  error: outcome.status === "failed" ? String(outcome.error) : undefined,
});

const out = { era: client.getProtocolEra(), capabilities: session.capabilities, asked };
try {
  if (mode === "resume") {
    const execution = await session.resumeTask(JSON.parse(payload));
    out.kind = execution.kind;
    out.taskId = execution.handle?.taskId;
    Object.assign(out, outcomeOf(await execution.settle({ onEvent })));
  } else {
    const { tool, arguments: toolArgs } = JSON.parse(payload);
    const execution = await session.callTool(tool, toolArgs);
    out.kind = execution.kind;
    out.taskId = execution.handle?.taskId;
    if (mode === "run" || execution.kind !== "task") {
      Object.assign(out, outcomeOf(await execution.settle({ onEvent })));
    } else if (mode === "cancel") {
      for await (const event of execution.updates()) {
        onEvent(event);
        if (event.type === "task" && event.task.status === "working" && /step \d+\/\d+/.test(event.task.statusMessage ?? "")) {
          break; // it is training (the message shows step/total): stop it
        }
        if (event.type === "outcome") break;
      }
      await execution.cancel();
      const snapshot = await session.task(out.taskId).snapshot();
      out.afterCancel = snapshot.status;
    } else if (mode === "handoff") {
      await execution.handoff((reference) => {
        out.reference = reference;
      });
      // The client goes away as a crashed or restarted one would: no close, which in
      // ext-tasks 0.2.2 would still cancel the handed-off task. The server exits on EOF.
      console.log(JSON.stringify(out));
      process.exit(0);
    } else {
      throw new Error(`unknown mode ${mode}`);
    }
  }
  out.statuses = statuses;
} finally {
  await session.close();
  await client.close();
}
console.log(JSON.stringify(out));
