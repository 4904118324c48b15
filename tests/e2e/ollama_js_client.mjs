// The ollama npm client against corral: list, show, ps, chat, generate (streamed), embed and
// a tool call. Usage: node ollama_js_client.mjs <node_modules folder> <corral url> <model>.
// Prints one JSON object with what each call returned, for the Python test to check.
import { createRequire } from "node:module";
import path from "node:path";

const [modules, host, model] = process.argv.slice(2);
const require = createRequire(path.join(modules, "noop.js"));
const { Ollama } = require("ollama");
const client = new Ollama({ host });
const short = { num_predict: 8, temperature: 0 };
const weather = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Get the weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};

const out = {};
out.list = (await client.list()).models.map((m) => m.name);
const shown = await client.show({ model });
out.show = { family: shown.details.family, capabilities: shown.capabilities };
const chat = await client.chat({ model, messages: [{ role: "user", content: "Hi" }], options: short });
out.chat = { content: chat.message.content, done: chat.done, eval_count: chat.eval_count };
let pieces = 0;
for await (const part of await client.generate({ model, prompt: "The sky is", stream: true, options: short })) {
  pieces += 1;
}
out.generate_pieces = pieces;
out.ps = (await client.ps()).models.map((m) => m.name);
out.embed = (await client.embed({ model, input: ["hello", "world"] })).embeddings.map((e) => e.length);
const messages = [];
for (const [city, sky] of [["Rome", "sunny"], ["Oslo", "rain"]]) {
  messages.push(
    { role: "user", content: `What is the weather in ${city}?` },
    { role: "assistant", content: "", tool_calls: [{ function: { name: "get_weather", arguments: { city } } }] },
    { role: "tool", content: sky, tool_name: "get_weather" },
  );
}
messages.push({ role: "user", content: "What is the weather in Paris?" });
const tooled = await client.chat({ model, messages, tools: [weather], options: { temperature: 0 } });
out.tool_calls = (tooled.message.tool_calls || []).map((c) => c.function);
try {
  await client.chat({ model: "no-such-model", messages: [{ role: "user", content: "x" }] });
  out.unknown = "answered";
} catch (error) {
  out.unknown = { status: error.status_code, message: error.message };
}
console.log(JSON.stringify(out));
