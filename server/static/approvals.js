// A tool call of agent code that waits for a person (server/tools/approvals): what it would
// do, and Approve / Deny. The run's event stream brings the request; the decision is one POST,
// after which the same stream shows the run going on (the call ran, or raised PermissionError).

const el = (tag, className, text) => {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
};

/**
 * @param {{id: string, session_id: string, server: string, tool: string, arguments: object}} event
 * @param {{decideApproval: (sessionId: string, id: string, approve: boolean) => Promise<object>}} api
 */
export function approvalBox(event, api) {
  const box = el("div", "approval pending");
  box.dataset.approval = event.id;
  box.append(el("div", "approval-title", `Approval needed: ${event.server} · ${event.tool}`));
  box.append(el("pre", "approval-arguments", JSON.stringify(event.arguments, null, 2)));
  const approve = el("button", "approve", "Approve");
  const deny = el("button", "deny", "Deny");
  const note = el("span", "approval-note", "The code waits for your decision.");
  approve.type = deny.type = "button";
  const decide = async (yes) => {
    approve.disabled = deny.disabled = true;
    box.classList.remove("pending"); // the run may go on before the answer is read
    note.textContent = yes ? "Approving…" : "Denying…";
    try {
      await api.decideApproval(event.session_id, event.id, yes);
      settle(box, yes ? "Approved: the call runs." : "Denied: the code gets a PermissionError.", yes ? "approved" : "denied");
    } catch (error) {
      note.textContent = `Not decided: ${error.message}`;
      approve.disabled = deny.disabled = false;
      box.classList.add("pending");
    }
  };
  approve.addEventListener("click", () => decide(true));
  deny.addEventListener("click", () => decide(false));
  const actions = el("div", "approval-actions");
  actions.append(approve, deny, note);
  box.append(actions);
  return box;
}

/** The run went on past its requests (decided elsewhere, timed out, or drawn again after a
 * reload): no buttons left to press. */
export function settleAll(root) {
  for (const box of root.querySelectorAll(".approval.pending")) settle(box, "Decided.", "decided");
}

function settle(box, text, state) {
  box.classList.remove("pending");
  box.classList.add(state);
  for (const button of box.querySelectorAll("button")) button.remove();
  box.querySelector(".approval-note").textContent = text;
}
