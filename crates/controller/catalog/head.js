/**
 * Returns the first `num` (default 1) entries of `lines`: `{lines, num}`.
 */
function main(params) {
  var lines = params.lines || [];
  var num = params.num === undefined ? 1 : parseInt(params.num, 10);
  if (!(num >= 0)) num = 1;
  return { lines: lines.slice(0, num), num: num };
}
