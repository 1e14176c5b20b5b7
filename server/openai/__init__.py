"""The OpenAI wire format: request/response schemas, tool calls, structured outputs, logprobs, Responses items."""
