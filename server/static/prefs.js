// What the page remembers in this browser: the API key, the agent settings and the current
// session id (so a reload reopens the conversation). Nothing leaves the browser except as
// part of the requests the page makes to its own server.

const PREFIX = "codeact.";

function read(name, fallback = "") {
  try {
    return localStorage.getItem(PREFIX + name) ?? fallback;
  } catch {
    return fallback; // storage disabled (private mode): behave as a fresh browser
  }
}

function write(name, value) {
  try {
    if (value === "" || value === null || value === undefined) localStorage.removeItem(PREFIX + name);
    else localStorage.setItem(PREFIX + name, String(value));
  } catch {
    // storage disabled: the setting lasts for this page only
  }
}

export const prefs = {
  get apiKey() { return read("apiKey"); },
  set apiKey(value) { write("apiKey", value); },
  get sessionId() { return read("sessionId"); },
  set sessionId(value) { write("sessionId", value); },
  /** The settings form fields by input id; "" means "use the server's default". */
  setting(id) { return read(`setting.${id}`); },
  setSetting(id, value) { write(`setting.${id}`, value); },
};
