"""One dispatch worker process for the benchmark: passes until nothing is due.

Prints when it began and ended dispatching (wall clock), so start-up time
does not count.
"""

import json
import sys
import time
from datetime import datetime

import django

django.setup()

from notifications.dispatch import dispatch  # noqa: E402

if __name__ == "__main__":
    now = datetime.fromisoformat(sys.argv[1])
    began = time.time()
    while True:
        result = dispatch(now, pace=False)
        if not any(result.as_dict().values()):
            break
    print(json.dumps({"began": began, "ended": time.time()}), flush=True)
