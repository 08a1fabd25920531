/**
 * Sorts an array of strings `lines` and returns `{lines, length}`.
 */
function main(params) {
  var lines = params.lines || [];
  if (!Array.isArray(lines)) lines = String(lines).split('\n');
  var sorted = lines.map(String).sort();
  console.log('sort input msg: ' + JSON.stringify(lines));
  return { lines: sorted, length: sorted.length };
}
