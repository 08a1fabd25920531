/**
 * Returns its input unchanged.
 */
function main(params) {
  return params || {};
}
