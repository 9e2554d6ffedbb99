/**
 * What of the decoded text may be shown now, and whether generation ends here. Held back until a
 * later block: a trailing U+FFFD (a multi-byte character whose last byte is still to come) and
 * the last characters that could be the start of a stop sequence.
 */
export function visibleText(
  decoded: string,
  stops: readonly string[],
  ended: boolean,
  atLimit: boolean,
): { text: string; final: "stop" | "length" | null } {
  let stopAt = -1;
  for (const stop of stops) {
    const at = decoded.indexOf(stop);
    if (at !== -1 && (stopAt === -1 || at < stopAt)) stopAt = at;
  }
  if (stopAt !== -1) return { text: decoded.slice(0, stopAt), final: "stop" };
  if (ended) return { text: decoded, final: "stop" };
  if (atLimit) return { text: decoded, final: "length" };
  let text = decoded.replace(/\uFFFD+$/, "");
  const holdBack = Math.max(0, ...stops.map((s) => s.length - 1));
  for (let keep = Math.min(holdBack, text.length); keep > 0; keep--) {
    const tail = text.slice(text.length - keep);
    if (stops.some((s) => s.startsWith(tail))) {
      text = text.slice(0, text.length - keep);
      break;
    }
  }
  return { text, final: null };
}
