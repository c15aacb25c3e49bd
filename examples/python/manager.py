# The seed's Manager program. Only the import of Manager changed: the dict and the list
# live in an xproc Manager server, which C++ proxies (or any Cap'n Proto client) reach too.
from multiprocessing import Process

from xproc import Manager


def f(dic, lst, i):
    dic[f"Process_{i}"] = "1"
    dic["2"] = 2
    dic[0.25] = None
    lst.append(i)


if __name__ == "__main__":
    with Manager() as manager:
        dic = manager.dict()
        lst = manager.list(range(5))
        processes = [Process(target=f, args=(dic, lst, i)) for i in range(10)]
        for p in processes:
            p.start()
        for p in processes:
            p.join()
        print(dic)
        print(lst)
