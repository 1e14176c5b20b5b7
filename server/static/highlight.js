// A small Python highlighter, written for this page (no dependency, no network).
// It colours tokens for reading, it does not parse: code arrives token by token while the
// model writes it, so unterminated strings must highlight to the end rather than fail.
// Output is built from DOM text nodes, never innerHTML, so model text cannot inject markup.

const KEYWORDS = new Set(
  ("False None True and as assert async await break case class continue def del elif else " +
   "except finally for from global if import in is lambda match nonlocal not or pass raise " +
   "return try while with yield").split(" "),
);
const BUILTINS = new Set(
  ("abs all any bool bytes dict dir enumerate filter float format getattr hasattr input int " +
   "isinstance iter len list map max min next object open print range repr reversed round " +
   "set setattr sorted str sum super tuple type zip self").split(" "),
);

// Groups: 1 comment, 2 string (optional prefix, triple or single quoted, maybe unclosed),
// 3 number, 4 decorator, 5 identifier.
const TOKEN = new RegExp(
  [
    /(#[^\n]*)/.source,
    /((?:[rRbBuUfF]{1,2})?(?:'''[\s\S]*?(?:'''|$)|"""[\s\S]*?(?:"""|$)|'(?:\\.|[^'\\\n])*'?|"(?:\\.|[^"\\\n])*"?))/.source,
    /(\b(?:0[xXoObB][\da-fA-F_]+|\d[\d_]*\.?\d*(?:[eE][+-]?\d+)?j?)\b)/.source,
    /(@[A-Za-z_][\w.]*)/.source,
    /([A-Za-z_]\w*)/.source,
  ].join("|"),
  "g",
);

/** Fill `element` with highlighted `code` (replaces its children). */
export function highlightPython(element, code) {
  const out = document.createDocumentFragment();
  let last = 0;
  let previousWord = "";
  TOKEN.lastIndex = 0;
  for (let match = TOKEN.exec(code); match; match = TOKEN.exec(code)) {
    if (match[0] === "") { TOKEN.lastIndex += 1; continue; }
    if (match.index > last) out.append(code.slice(last, match.index));
    const [text, comment, string, number, decorator, word] = match;
    let kind = null;
    if (comment) kind = "com";
    else if (string) kind = "str";
    else if (number) kind = "num";
    else if (decorator) kind = "dec";
    else if (word) {
      if (KEYWORDS.has(word)) kind = "kw";
      else if (previousWord === "def" || previousWord === "class") kind = "fn";
      else if (BUILTINS.has(word)) kind = "bi";
      previousWord = word;
    }
    if (kind) {
      const span = document.createElement("span");
      span.className = `tok-${kind}`;
      span.textContent = text;
      out.append(span);
    } else {
      out.append(text);
    }
    last = match.index + text.length;
  }
  if (last < code.length) out.append(code.slice(last));
  element.replaceChildren(out);
}
