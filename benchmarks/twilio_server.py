"""The loopback Twilio-compatible server (tests/fake_twilio.py) in a process of its own.

Adds two paths for the benchmark: GET /bench/stats (how many texts it took)
and POST /bench/reset. Prints its URL on the first line of output.
"""

import json
import time

import django

django.setup()

from tests.fake_twilio import FakeTwilio  # noqa: E402


class CountingTwilio(FakeTwilio):
    def _handle(self, handler, method: str) -> None:
        if handler.path == "/bench/stats":
            with self.lock:
                taken = len(self.messages)
            return self._reply(handler, 200, {"messages": taken})
        if handler.path == "/bench/reset":
            handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
            self.reset()
            return self._reply(handler, 200, {"messages": 0})
        return super()._handle(handler, method)

    def _record(self, params: dict) -> dict:
        with self.lock:  # the request log is for tests; here it would only grow
            self.requests.clear()
        return super()._record(params)


if __name__ == "__main__":
    server = CountingTwilio().start()
    print(json.dumps({"url": server.url}), flush=True)
    while True:
        time.sleep(60)
