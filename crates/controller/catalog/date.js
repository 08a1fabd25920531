/**
 * Returns the current date and time: `{date}` (ISO 8601).
 */
function main() {
  return { date: new Date().toISOString() };
}
