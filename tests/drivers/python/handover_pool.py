"""Applications on SQLAlchemy pools (pool_pre_ping, as SQLAlchemy recommends for servers that
close idle connections) writing through the proxy while it is handed over to new processes.

    python3 handover_pool.py URL SECONDS THREADS TAG

URL is a SQLAlchemy URL (postgresql+psycopg://... or mysql+pymysql://...). Each thread
commits short transactions (INSERT INTO ledger (client, n)) until SECONDS have passed, with
some idle time between them so that the pool holds idle connections when a drain closes
them. Prints one line per committed row ("ok TAG client n") and per error ("error STEP
..."; STEP is where it came: begin (checkout and ping), first, second, commit).
"""
import sys
import threading
import time

from sqlalchemy import create_engine, text

url, seconds, threads, tag = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
engine = create_engine(url, pool_size=threads, max_overflow=0, pool_pre_ping=True)
lock = threading.Lock()
out = []


def client(i):
    client_id = tag * 100 + i
    n = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        n += 1
        step = "begin"
        try:
            with engine.begin() as c:
                step = "first"
                c.execute(text("INSERT INTO ledger VALUES (:c, :n)"), {"c": client_id, "n": n})
                step = "second"
                c.execute(text("SELECT count(*) FROM ledger WHERE client = :c"), {"c": client_id})
                step = "commit"
            with lock:
                out.append(f"ok {tag} {client_id} {n}")
        except Exception as e:  # noqa: BLE001 - every error is reported
            with lock:
                out.append(f"error {step} {client_id} {n}: {type(e).__name__}: {e}".replace("\n", " "))
        # Idle in the pool for a while: some connections are idle when a drain comes.
        time.sleep(0.005 * (i % 4))


ts = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
engine.dispose()
print("\n".join(out))
