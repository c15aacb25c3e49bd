"""multiprocessing.Manager as the peer of xproc's Manager benchmark (standard library only).

usage: manager_peer.py --workload set|get|append --count N --reps R [--clients K] [--latency]
Throughput: K client processes each make N calls on one dict (or list); prints
{"ops_per_s": median of the aggregate rates}. Latency (--latency, one client): every call
is timed after 500 warm-up calls; prints {"p50_us": ..., "p99_us": ...} (medians).
"""
import argparse
import json
import multiprocessing as mp
import statistics
import time


def call(workload, shared, i):
    if workload == "set":
        shared["k%d" % (i % 1000)] = i
    elif workload == "get":
        assert shared["k%d" % (i % 1000)] == i % 1000
    else:
        shared.append(i)


def client(workload, shared, count, stamps, slot):
    stamps[2 * slot] = time.monotonic_ns()
    for i in range(count):
        call(workload, shared, i)
    stamps[2 * slot + 1] = time.monotonic_ns()


def latency_client(workload, shared, count, result):
    for i in range(500):
        call(workload, shared, i)
    samples = []
    for i in range(count):
        start = time.perf_counter_ns()
        call(workload, shared, i)
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    result[0] = samples[len(samples) // 2]
    result[1] = samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def shared_object(manager, workload):
    if workload == "append":
        return manager.list()
    d = manager.dict()
    d.update({"k%d" % i: i for i in range(1000)})
    return d


def throughput(workload, count, clients):
    with mp.Manager() as manager:
        shared = shared_object(manager, workload)
        stamps = mp.Array("q", 2 * clients)
        procs = [mp.Process(target=client, args=(workload, shared, count, stamps, k)) for k in range(clients)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        starts, ends = stamps[0::2], stamps[1::2]
        if workload == "append":
            assert len(shared) == count * clients
        return count * clients / ((max(ends) - min(starts)) / 1e9)


def latency(workload, count):
    with mp.Manager() as manager:
        shared = shared_object(manager, workload)
        result = mp.Array("d", 2)
        p = mp.Process(target=latency_client, args=(workload, shared, count, result))
        p.start()
        p.join()
        return result[0], result[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", choices=["set", "get", "append"], required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--latency", action="store_true")
    args = parser.parse_args()
    mp.set_start_method("fork")
    if args.latency:
        runs = [latency(args.workload, args.count) for _ in range(args.reps)]
        print(json.dumps({"p50_us": statistics.median(r[0] for r in runs),
                          "p99_us": statistics.median(r[1] for r in runs)}))
    else:
        rates = [throughput(args.workload, args.count, args.clients) for _ in range(args.reps)]
        print(json.dumps({"ops_per_s": statistics.median(rates)}))


if __name__ == "__main__":
    main()
