// Wires the page: the composer starts a background /v1/agent run for the current session and
// follows its events (a reload follows it again from its start), Stop cancels it, the status
// line polls /health, settings persist in the browser.

import { Api, ApiError } from "./api.js";
import { approvalBox, settleAll } from "./approvals.js";
import { prefs } from "./prefs.js";
import { Conversation } from "./render.js";

const $ = (id) => document.getElementById(id);
const SETTINGS = ["max-turns", "temperature", "execution-timeout", "samples"];
const HEALTH_EVERY_MS = 4000;

const api = new Api(() => prefs.apiKey);
const conversation = new Conversation($("conversation"), api);
let model = null;
let controller = null; // AbortController of the running agent request

function setBusy(busy) {
  $("send").disabled = busy;
  $("new-session").disabled = busy;
  $("stop").hidden = !busy;
  $("send").hidden = busy;
}

function showSession() {
  const id = prefs.sessionId;
  $("session-label").textContent = id ? `session ${id.slice(-8)}` : "new session";
  $("session-label").title = id || "a session starts with the first message";
}

// -- status line ------------------------------------------------------------------------
async function refreshHealth() {
  const status = $("status");
  try {
    const health = await api.health();
    model = health.model;
    const depth = health.queue_depth ?? 0;
    const queue = depth > 0 ? `queue busy (${depth})` : "queue idle";
    const parts = [`model ${health.model}`, `backend ${health.backend}`];
    if (health.sandbox_isolation) parts.push(`sandbox ${health.sandbox_isolation}`);
    status.replaceChildren(parts.join(" · ") + " · ");
    const queueEl = document.createElement("span");
    queueEl.className = depth > 0 ? "busy" : "idle";
    queueEl.textContent = queue;
    status.append(queueEl);
  } catch (error) {
    const down = document.createElement("span");
    down.className = "down";
    down.textContent = error instanceof ApiError && error.status === 401
      ? "the server wants an API key: open Settings"
      : `server unreachable (${error.message})`;
    status.replaceChildren(down);
  }
}

// -- settings ---------------------------------------------------------------------------
function setupSettings() {
  const panel = $("settings");
  const toggle = $("settings-toggle");
  const open = (show) => {
    panel.hidden = !show;
    toggle.setAttribute("aria-expanded", String(show));
  };
  toggle.addEventListener("click", () => open(panel.hidden));
  panel.addEventListener("submit", (event) => event.preventDefault());
  $("api-key").value = prefs.apiKey;
  $("api-key").addEventListener("change", (event) => {
    prefs.apiKey = event.target.value.trim();
    refreshHealth();
  });
  for (const id of SETTINGS) {
    $(id).value = prefs.setting(id);
    $(id).addEventListener("input", (event) => prefs.setSetting(id, event.target.value));
  }
  return open;
}

function agentOptions() {
  const number = (id) => {
    const value = $(id).value.trim();
    return value === "" || Number.isNaN(Number(value)) ? undefined : Number(value);
  };
  return {
    max_turns: number("max-turns"),
    temperature: number("temperature"),
    execution_timeout: number("execution-timeout"),
    // Samples start a conversation: a follow-up continues the one winning session.
    samples: prefs.sessionId ? undefined : number("samples"),
  };
}

// -- running the agent ------------------------------------------------------------------
async function send(text) {
  if (!model) await refreshHealth();
  conversation.addUser(text);
  setBusy(true);
  let retried = false;
  for (;;) {
    const run = conversation.startRun(prefs.sessionId);
    controller = new AbortController();
    const body = { model, messages: [{ role: "user", content: text }], ...agentOptions() };
    if (prefs.sessionId) body.session_id = prefs.sessionId;
    try {
      const started = await api.startAgent(body);
      onEvent(run, { type: "session", session_id: started.id });
      await api.followAgent(started.id, controller.signal, (event) => onEvent(run, event));
      if (run.status.classList.contains("running")) run.failed("the stream ended early");
    } catch (error) {
      if (error.name === "AbortError") {
        await untilSessionIdle();
        run.stopped();
      } else if (error instanceof ApiError && error.status === 404 && body.session_id && !retried) {
        // The session expired or was deleted on the server: start a new one, once.
        run.el.remove();
        prefs.sessionId = "";
        showSession();
        retried = true;
        continue;
      } else {
        run.failed(error.message);
        if (error instanceof ApiError && error.status === 401) openSettings(true);
      }
    }
    break;
  }
  controller = null;
  setBusy(false);
  refreshHealth();
}

function onEvent(run, event) {
  if (event.sample) {
    // Another sample's run (samples > 1): a line of its own; its steps are in the response.
    if (event.type === "session") run.sampleLine(event.sample);
    else if (event.type === "sample_done") run.sampleDone(event);
    return;
  }
  if (event.type === "session") {
    prefs.sessionId = event.session_id;
    run.sessionId = event.session_id;
    if (event.sample === 0) run.sampleLine(0);
    showSession();
  } else if (event.type === "sample_done") {
    run.sampleDone(event);
  } else if (event.type === "delta") {
    run.delta(event);
  } else if (event.type === "approval_request") {
    run.el.insertBefore(approvalBox(event, api), run.status);
  } else if (event.type === "step") {
    settleAll(run.el); // the call it waited on was decided
    run.finishStep(event.step);
  } else if (event.type === "done") {
    settleAll(run.el);
    if (event.agreement) {
      run.agreement(event);
      prefs.sessionId = event.session_id; // the winning run's session continues the conversation
      showSession();
    }
    run.done(event);
  }
}

/** After Stop the server cancels the run; wait until it has let go of the session. */
async function untilSessionIdle(timeoutMs = 15000) {
  const id = prefs.sessionId;
  const deadline = Date.now() + timeoutMs;
  while (id && Date.now() < deadline) {
    try {
      if (!(await api.session(id)).busy) return;
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
}

/** After a reload mid-run: draw the running run again from its first event, then live. */
async function followAgain(id) {
  conversation.lastRun?.el.remove(); // the session's view of it; the events redraw it whole
  const run = conversation.startRun(id);
  controller = new AbortController();
  setBusy(true);
  try {
    await api.followAgent(id, controller.signal, (event) => onEvent(run, event));
    if (run.status.classList.contains("running")) run.failed("the stream ended early");
  } catch (error) {
    if (error.name === "AbortError") {
      await untilSessionIdle();
      run.stopped();
    } else {
      run.failed(error.message); // e.g. 404: a run started in the foreground, or already forgotten
    }
  }
  controller = null;
  setBusy(false);
}

/** Stop: the run is the server's (it outlives the page): stop reading it, and ask it to stop. */
async function stop() {
  const id = prefs.sessionId;
  controller?.abort(); // first, so the end of the cancelled run's stream reads as a stop
  if (id) await api.cancelAgent(id).catch(() => {});
}

async function newSession() {
  const id = prefs.sessionId;
  prefs.sessionId = "";
  showSession();
  conversation.clear();
  if (id) api.deleteSession(id).catch(() => {}); // free its sandbox; gone already is fine
}

async function restore() {
  const id = prefs.sessionId;
  if (!id) return;
  try {
    const session = await api.session(id);
    conversation.renderSession(session);
    if (session.busy) await followAgain(id);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      prefs.sessionId = "";
      showSession();
    }
  }
}

// -- start ------------------------------------------------------------------------------
const openSettings = setupSettings();
showSession();
setBusy(false);
$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || controller) return;
  $("prompt").value = "";
  send(text);
});
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
$("stop").addEventListener("click", stop);
$("new-session").addEventListener("click", newSession);
refreshHealth();
restore();
setInterval(() => { if (!document.hidden) refreshHealth(); }, HEALTH_EVERY_MS);
