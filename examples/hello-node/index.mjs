// A hello-world function for Nimbus's Node.js runtime (an ES module). Invoke it with
// {"name": "you"}, or call its URL with ?name=you.
export const handler = async (event) => {
  const query = (event && event.queryStringParameters) || {};
  const name = (event && event.name) || query.name || "world";
  console.log(`greeting ${name}`);
  return { message: `Hello, ${name}!` };
};
