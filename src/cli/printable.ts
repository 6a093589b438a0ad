// What the server sends is written by others: a job's name, a dataset's, an error message with a
// member's input in it. Printed raw, a name holding terminal escapes clears the screen, moves the
// cursor or prints fake rows, and bidi overrides show text in another order than it is. Every
// string from the server goes through here before it reaches the terminal.
import { stripVTControlCharacters } from 'node:util';

/**
 * C0 controls (newline and tab too), DEL, C1 controls (8-bit CSI, OSC…), the Unicode line and
 * paragraph separators, and the bidi embeddings, overrides, isolates and marks.
 */
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
/** The same, but keeping line ends and tabs: for multi-line text (a policy, a message). */
const CONTROLS_BUT_LINES = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * A value as one line a person can read: ANSI escape sequences removed whole (Node's
 * stripVTControlCharacters, so `ESC[2J` leaves nothing, not `[2J`), then every other control
 * character. For names, ids, states: anything printed in a row.
 */
export function printable(s: unknown): string {
  return stripVTControlCharacters(String(s)).replace(CONTROLS, '');
}

/** Like printable, but line ends and tabs stay: for text meant to span lines. */
export function printableText(s: unknown): string {
  return stripVTControlCharacters(String(s)).replace(/\r\n?/g, '\n').replace(CONTROLS_BUT_LINES, '');
}

/**
 * A template tag: the literal text as written, every interpolated value through printable.
 * `line\`job ${j.name}: ${j.state}\`` cannot be broken onto two lines by the name.
 */
export function line(strings: TemplateStringsArray, ...values: unknown[]): string {
  let out = strings[0];
  for (let i = 0; i < values.length; i++) out += printable(values[i]) + strings[i + 1];
  return out;
}

/**
 * JSON for a terminal: the same value (JSON.parse gives it back unchanged), with the characters
 * JSON.stringify leaves raw (DEL, C1, bidi, line separators) written as \u escapes.
 */
export function terminalJson(x: unknown): string {
  return JSON.stringify(x, null, 2).replace(
    /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g,
    (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'),
  );
}
