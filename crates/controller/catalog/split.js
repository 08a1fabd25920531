/**
 * Splits `payload` on `separator` (default a newline): returns `{lines, payload}`.
 */
function main(params) {
  var payload = params.payload === undefined ? '' : String(params.payload);
  var separator = params.separator === undefined ? '\n' : String(params.separator);
  var lines = payload.split(separator);
  return { lines: lines, payload: payload };
}
