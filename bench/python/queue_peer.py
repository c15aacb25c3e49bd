"""multiprocessing.Queue as the peer of xproc's queue benchmark (standard library only).

Prints one JSON object: {"msgs_per_s": median over reps} for throughput, or
{"p50_us": ..., "p99_us": ...} (medians over reps) for --pingpong.
A child produces; the parent consumes, counts every message, checks the order and
compares the last message in full. Time runs from the producer's first put to the
consumer's receipt of the last message (time.monotonic_ns is system-wide).
"""
import argparse
import json
import multiprocessing as mp
import statistics
import time


def producer(q, workload, count, size, start):
    payload = b"x" * size
    last = b"y" * size
    start.value = time.monotonic_ns()
    for i in range(count):
        if workload == "small_dict":
            q.put({"id": i, "name": "Process-1", "x": 0.25})
        else:
            q.put(last if i == count - 1 else payload)


def throughput(workload, size, count):
    q = mp.Queue()
    start = mp.Value("q", 0)
    p = mp.Process(target=producer, args=(q, workload, count, size, start))
    p.start()
    for i in range(count):
        m = q.get()
        if workload == "small_dict":
            assert m["id"] == i, (m, i)
        else:
            assert len(m) == size
    end = time.monotonic_ns()
    if workload == "small_dict":
        assert m == {"id": count - 1, "name": "Process-1", "x": 0.25}
    else:
        assert m == b"y" * size
    p.join()
    return count / ((end - start.value) / 1e9)


def echo(inq, outq, rounds):
    for _ in range(rounds):
        outq.put(inq.get())


def pingpong(rounds, warmup):
    a, b = mp.Queue(), mp.Queue()
    p = mp.Process(target=echo, args=(a, b, rounds + warmup))
    p.start()
    samples = []
    for i in range(rounds + warmup):
        message = {"id": i, "name": "Process-1", "x": 0.25}
        t0 = time.monotonic_ns()
        a.put(message)
        reply = b.get()
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
        runs = [pingpong(args.count, 500) for _ in range(args.reps)]
        print(json.dumps({"p50_us": statistics.median(r[0] for r in runs),
                          "p99_us": statistics.median(r[1] for r in runs)}))
    else:
        runs = [throughput(args.workload, args.size, args.count) for _ in range(args.reps)]
        print(json.dumps({"msgs_per_s": statistics.median(runs)}))


if __name__ == "__main__":
    main()
