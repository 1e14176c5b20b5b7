// The conversation as DOM: user messages, and for each agent run its steps as they stream
// in (thinking, code, execution output, files, answer) and how the run ended. A step is
// drawn provisionally from `delta` events and redrawn from the authoritative `step`
// payload when it finishes, so a live run and a reloaded session look the same.
// Model and program output only ever lands in textContent: no markup injection.

import { highlightPython } from "./highlight.js";

const IMAGE = /\.(png|jpe?g|gif|svg|webp|bmp)$/i;
// Badge and sentence for each sandbox `killed_reason` (sandbox/result.py).
const KILLED = {
  timeout: ["timed out", "The execution ran past its time limit and was stopped."],
  memory: ["killed: out of memory", "The execution used more memory than allowed and was stopped."],
  output: ["killed: too much output", "The execution printed too much output and was stopped."],
  crashed: ["interpreter crashed", "The Python process crashed."],
  processes: ["killed: too many processes", "The execution started too many processes and was stopped."],
  disk: ["killed: disk limit", "The execution wrote more to disk than allowed and was stopped."],
  cancelled: ["cancelled", "The execution was cancelled."],
};

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export class Conversation {
  /** @param {HTMLElement} root @param {import("./api.js").Api} api */
  constructor(root, api) {
    this.root = root;
    this.api = api;
    this.emptyHint = root.querySelector(".empty");
  }

  clear() {
    this.root.replaceChildren(...(this.emptyHint ? [this.emptyHint] : []));
  }

  addUser(text) {
    this.emptyHint?.remove();
    this.root.append(el("div", "user-message", text));
    this.root.scrollTop = this.root.scrollHeight; // the user just wrote: follow the new run
  }

  startRun(sessionId) {
    const run = new RunView(this, sessionId);
    this.root.append(run.el);
    this.scroll();
    return run;
  }

  scroll() {
    const nearBottom = this.root.scrollHeight - this.root.scrollTop - this.root.clientHeight < 200;
    if (nearBottom) this.root.scrollTop = this.root.scrollHeight;
  }

  /** Redraw a whole session from GET /v1/agent/sessions/{id} (page reload). */
  renderSession(session) {
    this.clear();
    const steps = [...session.steps];
    let run = null;
    let observation = null; // the user message that carries the last step's output
    for (const message of session.messages) {
      const content = typeof message.content === "string" ? message.content : "";
      if (message.role === "user") {
        if (observation !== null && content === observation) {
          observation = null;
          continue;
        }
        this.addUser(content);
        run = this.startRun(session.id);
        run.settle();
      } else if (message.role === "assistant" && run) {
        observation = null;
        if (steps.length && stepMatches(steps[0], content)) {
          const step = steps.shift();
          run.finishStep(step);
          observation = step.observation?.message ?? null;
        } else {
          run.interruptedTurn(content); // a turn whose run was stopped before it finished
        }
      }
    }
    if (session.busy && run) run.setStatus("The agent is still working on this…", "running");
    this.lastRun = run; // the page may draw a running one again from its events
    this.root.scrollTop = this.root.scrollHeight;
  }
}

/** One sample run's end, for its line: ``Sample 2: 60 (solution, 3 turns)``. */
export function sampleText(event) {
  const turns = `${event.turns} turn${event.turns === 1 ? "" : "s"}`;
  const answer = event.answer ?? "no answer";
  return `Sample ${event.sample}${event.sample === 0 ? " (shown above)" : ""}: ${answer} (${event.finish_reason}, ${turns})`;
}

/** The vote in words: ``3 samples: 2 of 3 agree on 60`` (as the terminal says it). */
export function agreementText(agreement) {
  if (agreement.answer === null) return `${agreement.of} samples: none answered`;
  const which = agreement.sample === 0 ? "sample 0's answer" : `the answer of sample ${agreement.sample}`;
  return `${agreement.of} samples: ${agreement.votes} of ${agreement.of} agree on ${agreement.answer} (${which})`;
}

/** Why the server made a turn answer-only (the loop policy's forced answers). */
const FORCED = {
  repeat: "answer was forced: the agent repeated code whose output it had already seen",
  fed_back: "answer was forced: the agent ran its code again on the output it had printed",
  last_turn: "answer was forced: the turn limit was reached",
};

function stepMatches(step, raw) {
  const { action } = step;
  const key = action.type === "execute" ? action.code : action.type === "solution" ? action.answer : step.thought;
  return raw.includes((key ?? "").trim());
}

export class RunView {
  constructor(conversation, sessionId) {
    this.conversation = conversation;
    this.sessionId = sessionId;
    this.steps = new Map();
    this.el = el("div", "run");
    this.status = el("p", "run-status running", "Working…");
    this.el.append(this.status);
  }

  step(index) {
    let view = this.steps.get(index);
    if (!view) {
      view = new StepView(index, this);
      this.steps.set(index, view);
      this.el.insertBefore(view.el, this.samples ?? this.status); // run 0's steps above the samples
    }
    return view;
  }

  delta(event) {
    this.step(event.step).delta(event.channel, event.text);
    this.conversation.scroll();
  }

  finishStep(payload) {
    this.step(payload.index).render(payload);
    this.conversation.scroll();
  }

  interruptedTurn(raw) {
    const view = this.step(`raw-${this.steps.size}`);
    const match = /<execute>([\s\S]*?)(?:<\/execute>|$)/.exec(raw);
    view.delta("thought", match ? raw.slice(0, match.index) : raw);
    if (match) view.delta("code", match[1]);
    view.markStopped();
  }

  setStatus(text, kind = "") {
    this.status.className = `run-status ${kind}`.trim();
    this.status.textContent = text;
    this.status.hidden = !text;
  }

  /** A finished run from history: no live status line. */
  settle() {
    this.setStatus("");
  }

  done(event) {
    const turns = `${event.turns} turn${event.turns === 1 ? "" : "s"}`;
    const endings = {
      solution: `Done in ${turns}.`,
      no_action: `Done in ${turns} (the agent replied without running code).`,
      max_turns: `Stopped after ${turns}: the turn limit was reached (see Settings).`,
      length: `Stopped after ${turns}: the context window is full; start a new session.`,
    };
    let text = endings[event.finish_reason] ?? `Finished (${event.finish_reason}).`;
    if (event.forced_answer) text += ` The ${FORCED[event.forced_answer] ?? "answer was forced"}.`;
    this.setStatus(event.error ? `${text} ${event.error}` : text, event.error ? "error" : "done");
    if (event.run_id) this.status.after(this.notebookLink(event.run_id));
  }

  /** The run as a Jupyter notebook (its record on the server: code cells, outputs, plots). */
  notebookLink(runId) {
    const { api } = this.conversation;
    const link = el("a", "notebook", "⤓ notebook");
    link.href = api.notebookUrl(runId);
    link.download = `${runId}.ipynb`;
    link.title = "Download this run as a Jupyter notebook";
    link.addEventListener("click", (event) => downloadWithKey(event, api, link.href, link.download));
    return link;
  }

  // -- samples: run 0 streams above as a plain run; the others are one line each ----------
  samplesBox() {
    if (!this.samples) {
      this.samples = el("ul", "samples");
      this.el.insertBefore(this.samples, this.status);
    }
    return this.samples;
  }

  sampleLine(index) {
    const box = this.samplesBox();
    let line = box.querySelector(`[data-sample="${index}"]`);
    if (!line) {
      line = el("li", "sample running", index === 0 ? "Sample 0 (shown above): working…" : `Sample ${index}: working…`);
      line.dataset.sample = String(index);
      box.append(line);
    }
    return line;
  }

  sampleDone(event) {
    const line = this.sampleLine(event.sample);
    line.className = event.answer === null ? "sample no-answer" : "sample";
    line.textContent = sampleText(event);
  }

  /** The vote: how many runs agree, and the winning answer when it is not run 0's (drawn above). */
  agreement(event) {
    const box = this.samplesBox();
    for (const line of box.querySelectorAll(".sample")) {
      line.classList.toggle("winner", line.dataset.sample === String(event.agreement.sample));
    }
    const summary = el("p", "agreement", agreementText(event.agreement));
    this.el.insertBefore(summary, this.status);
    if (event.agreement.sample !== 0 && event.agreement.answer !== null) {
      this.el.insertBefore(el("div", "answer", event.agreement.answer), this.status);
    }
  }

  stopped() {
    for (const view of this.steps.values()) if (view.generating) view.markStopped();
    this.setStatus("Stopped. Generation and the running code were cancelled.", "stopped");
  }

  failed(message) {
    for (const view of this.steps.values()) if (view.generating) view.markStopped();
    this.setStatus(`Error: ${message}`, "error");
  }
}

class StepView {
  constructor(index, run) {
    this.run = run;
    this.generating = true;
    this.text = { thought: "", code: "", answer: "" };
    this.el = el("section", "step generating");
    this.el.dataset.step = String(index);
    const label = typeof index === "number" ? `Step ${index + 1}` : "Interrupted turn";
    this.el.append(el("div", "step-label", label));
    this.thought = this.el.appendChild(el("p", "thought"));
    this.highlightQueued = false;
  }

  part(name, make) {
    if (!this[name]) this[name] = this.el.appendChild(make());
    return this[name];
  }

  delta(channel, text) {
    this.text[channel] = (this.text[channel] ?? "") + text;
    if (channel === "thought") this.thought.textContent = this.text.thought.trim();
    else if (channel === "answer") this.part("answer", () => el("div", "answer")).textContent = this.text.answer.trim();
    else if (channel === "code" && !this.highlightQueued) {
      this.highlightQueued = true; // re-highlight at most once per frame while tokens stream
      requestAnimationFrame(() => {
        this.highlightQueued = false;
        if (this.generating) highlightPython(this.codeBlock(), this.text.code.replace(/^\n+/, ""));
      });
    }
  }

  codeBlock() {
    return this.part("code", () => el("pre", "code")).appendChild(this.codeEl ?? (this.codeEl = el("code")));
  }

  /** Redraw from the authoritative step payload. */
  render(step) {
    this.generating = false;
    this.el.classList.remove("generating");
    for (const name of ["code", "observation", "answer", "badges"]) {
      this[name]?.remove();
      this[name] = null;
    }
    this.codeEl = null;
    this.thought.textContent = (step.thought ?? "").trim();
    const { action } = step;
    if (action.type === "execute") highlightPython(this.codeBlock(), action.code ?? "");
    if (step.observation) {
      this.observation = this.el.appendChild(renderObservation(step.observation, this.run));
    }
    if (action.type === "solution") this.part("answer", () => el("div", "answer", action.answer ?? ""));
    if (step.forced) {
      const badges = this.part("badges", () => el("div", "badges"));
      badges.replaceChildren(el("span", "badge warn forced", FORCED[step.forced] ?? `answer forced: ${step.forced}`));
    }
  }

  markStopped() {
    this.generating = false;
    this.el.classList.remove("generating");
    if (this.text.code) highlightPython(this.codeBlock(), this.text.code.replace(/^\n+/, ""));
    const badges = this.part("badges", () => el("div", "badges"));
    badges.replaceChildren(el("span", "badge warn", "stopped"));
  }
}

function renderObservation(obs, run) {
  const box = el("div", "observation");
  const badges = el("div", "badges");
  const badge = (text, kind) => badges.append(el("span", `badge ${kind}`, text));
  const reason = obs.killed_reason ?? (obs.timed_out ? "timeout" : null);
  const [killedBadge, killedSentence] = KILLED[reason] ?? [`killed: ${reason}`, `The execution was stopped (${reason}).`];
  if (reason) badge(killedBadge, reason === "timeout" ? "timeout" : "killed");
  if (obs.error) badge("error", "error");
  if (obs.state_lost) badge("interpreter restarted: variables lost", "warn");
  if (obs.truncated) badge("output truncated", "warn");
  if (badges.childElementCount) box.append(badges);
  if (obs.stdout) box.append(el("pre", "stdout", obs.stdout));
  if (obs.stderr) box.append(el("pre", "stderr", obs.stderr));
  if (obs.error) box.append(el("pre", "error", obs.error));
  if (reason) box.append(el("pre", "error", killedSentence));
  if (!obs.stdout && !obs.stderr && !obs.error && !reason && !obs.files?.length) {
    box.append(el("p", "no-output", "ran with no output"));
  }
  if (obs.files?.length) box.append(renderFiles(obs.files, run));
  return box;
}

function renderFiles(paths, run) {
  const { api } = run.conversation;
  const list = el("div", "files");
  for (const path of paths) {
    if (IMAGE.test(path)) {
      const figure = el("figure");
      const img = el("img");
      img.alt = path;
      figure.append(img, el("figcaption", "", path));
      api.fileBlob(run.sessionId, path).then(
        (blob) => { img.src = URL.createObjectURL(blob); },
        (error) => { figure.lastChild.textContent = `${path} (could not load: ${error.message})`; },
      );
      list.append(figure);
    } else {
      const link = el("a", "", `⤓ ${path}`);
      link.href = api.fileUrl(run.sessionId, path);
      link.download = path.split("/").pop();
      link.addEventListener("click", (event) => downloadWithKey(event, api, link.href, link.download));
      list.append(link);
    }
  }
  return list;
}

/** A plain link cannot send the API key: fetch the file and hand the browser a blob. */
async function downloadWithKey(event, api, href, name) {
  if (!api.getKey()) return;
  event.preventDefault();
  const url = URL.createObjectURL(await api.blob(href));
  const temp = el("a");
  temp.href = url;
  temp.download = name;
  temp.click();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
