// The openai npm client against corral, sending tools: a tool call made by the model after
// two examples (whole and streamed), then the Responses stream's opening events.
// Usage: node openai_js_client.mjs <node_modules folder> <corral url> <model>.
// Prints one JSON object with what each call returned, for the Python test to check.
import { createRequire } from "node:module";
import path from "node:path";

const [modules, host, model] = process.argv.slice(2);
const require = createRequire(path.join(modules, "noop.js"));
const OpenAI = require("openai");
const client = new OpenAI({ baseURL: `${host}/v1`, apiKey: "unused", maxRetries: 0 });
const weather = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Get the weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};
const messages = [];
for (const [n, [city, sky]] of [["Rome", "sunny"], ["Oslo", "rain"]].entries()) {
  const call = { id: `call_${n}`, type: "function", function: { name: "get_weather", arguments: JSON.stringify({ city }) } };
  messages.push(
    { role: "user", content: `What is the weather in ${city}?` },
    { role: "assistant", content: "", tool_calls: [call] },
    { role: "tool", tool_call_id: `call_${n}`, content: sky },
  );
}
messages.push({ role: "user", content: "What is the weather in Paris?" });
const asked = { model, messages, tools: [weather], temperature: 0, max_tokens: 40, parallel_tool_calls: false };

const out = {};
const whole = await client.chat.completions.create(asked);
out.whole = {
  finish_reason: whole.choices[0].finish_reason,
  calls: (whole.choices[0].message.tool_calls || []).map((c) => c.function),
  model: whole.model,
};
const calls = {};
let finish = null;
for await (const chunk of await client.chat.completions.create({ ...asked, stream: true })) {
  for (const choice of chunk.choices) {
    finish = choice.finish_reason || finish;
    for (const part of choice.delta.tool_calls || []) {
      const into = (calls[part.index] ||= { name: "", arguments: "" });
      into.name += part.function?.name || "";
      into.arguments += part.function?.arguments || "";
    }
  }
}
out.streamed = { finish_reason: finish, calls: Object.values(calls) };
const opening = [];
for await (const event of await client.responses.create({ model, input: "Say hi.", max_output_tokens: 8, stream: true })) {
  if (event.type === "response.created" || event.type === "response.in_progress") {
    opening.push(event.response.model);
  }
}
out.responses_model = opening;
console.log(JSON.stringify(out));
