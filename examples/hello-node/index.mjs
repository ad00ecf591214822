// A hello-world function for Nimbus's Node.js runtime (an ES module).
export const handler = async (event) => {
  const name = (event && event.name) || "world";
  console.log(`greeting ${name}`);
  return { message: `Hello, ${name}!` };
};
