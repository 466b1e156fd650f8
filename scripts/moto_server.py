"""moto_server, with DynamoDB requests isolated from each other as DynamoDB isolates them.

moto 5.2's TransactWriteItems is not thread-safe: it deep-copies the table when it starts and,
when any item's condition fails, puts that copy back, wiping out whatever other requests wrote
in between (moto_server answers requests on several threads). DynamoDB runs transactions
serializably (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-isolation):
a cancelled transaction never undoes another request's write. The Insights tests race
redelivered batches through transactions, so they need that guarantee; one lock around every
DynamoDB request gives it (moto holds the GIL for the whole request anyway, so nothing is lost
in throughput). Every other service is served exactly as `moto_server` serves it.

Usage: python scripts/moto_server.py [moto_server's arguments]
"""

import threading

from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_DYNAMODB = threading.Lock()
_call_action = DynamoHandler.call_action


def _isolated_call_action(self):
    with _DYNAMODB:
        return _call_action(self)


DynamoHandler.call_action = _isolated_call_action

if __name__ == "__main__":
    main()
