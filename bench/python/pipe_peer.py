"""multiprocessing.Pipe as the peer of xproc's pipe benchmark (standard library only).

usage: pipe_peer.py --workload small_dict|bytes [--size N] --count N --reps R [--pingpong]
Prints {"msgs_per_s": median} or {"p50_us": ..., "p99_us": ...}.
"""
import argparse
import json
import multiprocessing as mp
import statistics
import time


def producer(conn, workload, count, size, start):
    payload = b"x" * size
    start.value = time.monotonic_ns()
    for i in range(count):
        if workload == "small_dict":
            conn.send({"id": i, "name": "Process-1", "x": 0.25})
        else:
            conn.send_bytes(payload)


def throughput(workload, size, count):
    a, b = mp.Pipe()
    start = mp.Value("q", 0)
    p = mp.Process(target=producer, args=(a, workload, count, size, start))
    p.start()
    for i in range(count):
        if workload == "small_dict":
            m = b.recv()
            assert m["id"] == i
        else:
            m = b.recv_bytes()
            assert len(m) == size
    end = time.monotonic_ns()
    p.join()
    return count / ((end - start.value) / 1e9)


def echo(conn, rounds):
    for _ in range(rounds):
        conn.send_bytes(conn.recv_bytes())


def pingpong(rounds, warmup, size):
    a, b = mp.Pipe()
    p = mp.Process(target=echo, args=(b, rounds + warmup))
    p.start()
    samples = []
    message = b"p" * size
    for i in range(rounds + warmup):
        t0 = time.monotonic_ns()
        a.send_bytes(message)
        reply = a.recv_bytes()
        t1 = time.monotonic_ns()
        assert reply == message
        if i >= warmup:
            samples.append((t1 - t0) / 1000)
    p.join()
    samples.sort()
    return samples[len(samples) // 2], samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", choices=["small_dict", "bytes"], default="small_dict")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--count", type=int, default=100000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--pingpong", action="store_true")
    args = parser.parse_args()
    mp.set_start_method("fork")
    if args.pingpong:
        runs = [pingpong(args.count, 500, args.size) for _ in range(args.reps)]
        print(json.dumps({"p50_us": statistics.median(r[0] for r in runs),
                          "p99_us": statistics.median(r[1] for r in runs)}))
    else:
        runs = [throughput(args.workload, args.size, args.count) for _ in range(args.reps)]
        print(json.dumps({"msgs_per_s": statistics.median(runs)}))


if __name__ == "__main__":
    main()
