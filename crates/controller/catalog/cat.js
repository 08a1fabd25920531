/**
 * Joins an array of strings `lines` with newlines: returns `{lines, payload}`.
 */
function main(params) {
  var lines = params.lines || [];
  if (!Array.isArray(lines)) lines = [String(lines)];
  var payload = lines.join('\n');
  return { lines: lines, payload: payload };
}
