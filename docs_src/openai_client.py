"""Talk to `lmfast serve` with the openai package."""

import os

from openai import OpenAI

BASE_URL = os.environ.get("LMFAST_BASE_URL", "http://127.0.0.1:8000/v1")
client = OpenAI(base_url=BASE_URL, api_key="unused-on-loopback")
reply = client.chat.completions.create(
    model="smollm2-135m-instruct",
    messages=[{"role": "user", "content": "What is the capital of France?"}],
    temperature=0,
)
print(reply.choices[0].message.content)
