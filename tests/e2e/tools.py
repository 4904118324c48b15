"""The tool the client suites offer the demo model, and the calls they show it first."""

from __future__ import annotations

from typing import Any

#: The tool the client suites offer the demo model (a base model: shown calls first).
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def weather_shots() -> list[dict[str, Any]]:
    """Two shown calls of WEATHER in Ollama's message shape, then the question the model
    answers with a third (a base model calls a tool only after seeing how)."""
    messages: list[dict[str, Any]] = []
    for city, weather in [("Rome", "sunny"), ("Oslo", "rain")]:
        shot = {"function": {"name": "get_weather", "arguments": {"city": city}}}
        messages += [
            {"role": "user", "content": f"What is the weather in {city}?"},
            {"role": "assistant", "content": "", "tool_calls": [shot]},
            {"role": "tool", "content": weather, "tool_name": "get_weather"},
        ]
    messages.append({"role": "user", "content": "What is the weather in Paris?"})
    return messages
