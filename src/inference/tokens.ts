// The gateway's own token count, for what the engine did not report (a stream cut by a budget or a
// dead replica, an engine that sends no usage): words and punctuation marks are tokens. It is the
// same rule as the bundled engine's, so its figures and the gateway's agree on the demo path.
const TOKEN = /[\p{L}\p{N}_]+|[^\s\p{L}\p{N}_]/gu;

/** The tokens of `text`, in order. */
export function splitTokens(text: string): string[] {
  return text.match(TOKEN) ?? [];
}

/** How many tokens `text` holds, without making the list. */
export function countTokens(text: string): number {
  let n = 0;
  TOKEN.lastIndex = 0;
  while (TOKEN.exec(text) !== null) n++;
  return n;
}
