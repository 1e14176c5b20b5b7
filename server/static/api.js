// The HTTP calls the page makes. Every call carries the API key as a Bearer token when one
// is set; workspace files are fetched as blobs for the same reason (an <img src> cannot
// send an Authorization header).

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export class Api {
  /** @param {() => string} getKey returns the current API key ("" for none) */
  constructor(getKey) {
    this.getKey = getKey;
  }

  headers(extra = {}) {
    const key = this.getKey();
    return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
  }

  async request(path, options = {}) {
    const response = await fetch(path, { ...options, headers: this.headers(options.headers) });
    if (!response.ok) throw await errorOf(response);
    return response;
  }

  async health() {
    return (await this.request("/health")).json();
  }

  async session(id) {
    return (await this.request(`/v1/agent/sessions/${encodeURIComponent(id)}`)).json();
  }

  async deleteSession(id) {
    await this.request(`/v1/agent/sessions/${encodeURIComponent(id)}`, { method: "DELETE" });
  }

  fileUrl(sessionId, path) {
    const parts = path.split("/").map(encodeURIComponent).join("/");
    return `/v1/agent/sessions/${encodeURIComponent(sessionId)}/files/${parts}`;
  }

  async fileBlob(sessionId, path) {
    return this.blob(this.fileUrl(sessionId, path));
  }

  /** A finished run's record as a Jupyter notebook (the run id is its `done` event's `run_id`). */
  notebookUrl(runId) {
    return `/v1/agent/runs/${encodeURIComponent(runId)}?format=ipynb`;
  }

  /** Approve or deny a tool call the agent's code waits on (its `approval_request` event). */
  async decideApproval(sessionId, approvalId, approve) {
    const path = `/v1/agent/sessions/${encodeURIComponent(sessionId)}/approvals/${encodeURIComponent(approvalId)}`;
    const body = JSON.stringify({ approve });
    return (await this.request(path, { method: "POST", body, headers: { "Content-Type": "application/json" } })).json();
  }

  async blob(url) {
    return (await this.request(url)).blob();
  }

  /**
   * Start a /v1/agent run in the background (it outlives this page: a reload follows it
   * again); resolves to `{id, status, events_url}`, `id` being the session's.
   */
  async startAgent(body) {
    const response = await this.request("/v1/agent", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...body, background: true }),
    });
    return response.json();
  }

  /**
   * Follow a session's background run from its first event: call `onEvent(agentEvent)` for
   * each chunk's `agent` field until the run ends. Aborting `signal` only stops reading.
   */
  async followAgent(sessionId, signal, onEvent) {
    const response = await this.request(`/v1/agent/sessions/${encodeURIComponent(sessionId)}/events`, {
      headers: { Accept: "text/event-stream" },
      signal,
    });
    for await (const data of sseData(response)) {
      if (data.error) throw new ApiError(500, data.error.message, data.error.code);
      if (data.agent) onEvent(data.agent);
    }
  }

  /** Stop a session's background run (its generation and any running execution). */
  async cancelAgent(sessionId) {
    await this.request(`/v1/agent/sessions/${encodeURIComponent(sessionId)}/cancel`, { method: "POST" });
  }
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  let code = null;
  try {
    const body = await response.json();
    if (body.error) ({ message, code } = body.error);
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, message, code);
}

/** The JSON payloads of a server-sent-events body, up to `data: [DONE]`. */
async function* sseData(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data === "[DONE]") return;
      if (data) yield JSON.parse(data);
    }
  }
}
