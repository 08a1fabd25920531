/**
 * Says hello to `name` (default "stranger") from `place` (default "somewhere").
 */
function main(params) {
  var name = params.name || 'stranger';
  var place = params.place || 'somewhere';
  console.log('Hello ' + name + ' from ' + place + '!');
  return { payload: 'Hello, ' + name + ' from ' + place + '!' };
}
