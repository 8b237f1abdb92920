"""What a MariaDB server saves when commands arrive pipelined (benches/README.md,
thirty-first session). Logs in with PyMySQL, then sends COM_QUERY point SELECTs of
sysbench's sbtest1 over the raw socket, BATCH per write, from THREADS connections, and
prints the server's CPU (user + system, from /proc/PID/stat) per query.

    python3 benches/mysql_pipelining.py PORT MARIADBD_PID USER PASSWORD N BATCH THREADS

Against the servers `HOLD=600 cargo bench --bench mysql_sysbench` keeps up (loopback only,
N queries per thread, then it stops).
"""
import pymysql, struct, time, sys, os, random, threading
PORT=int(sys.argv[1]); PID=sys.argv[2]; USER=sys.argv[3]; PW=sys.argv[4]
N=int(sys.argv[5]); B=int(sys.argv[6]); T=int(sys.argv[7])
def cpu():
    f=open(f"/proc/{PID}/stat").read().split(")")[1].split()
    return (int(f[11])+int(f[12]))/os.sysconf('SC_CLK_TCK')
def pkt(seq,payload): return struct.pack('<I',len(payload))[:3]+bytes([seq])+payload
def read_answer(sock,buf):
    # read one result set (text protocol, deprecate EOF off): cols, defs, EOF, rows, EOF
    eofs=0; first=True; ncols=None
    while True:
        while len(buf)<4: buf+=sock.recv(65536)
        l=int.from_bytes(buf[:3],'little')
        while len(buf)<4+l: buf+=sock.recv(65536)
        p=buf[4:4+l]; del buf[:4+l]
        if first:
            first=False
            if p[0] in (0,255): return
            continue
        if p[0]==0xfe and l<9:
            eofs+=1
            if eofs==2: return
def worker(n):
    c=pymysql.connect(host='127.0.0.1',port=PORT,user=USER,password=PW,database='sbtest')
    s=c._sock; buf=bytearray()
    for i in range(0,N,B):
        out=b''.join(pkt(0,b'\x03'+f"SELECT c FROM sbtest1 WHERE id={random.randint(1,10000)}".encode()) for _ in range(B))
        s.sendall(out)
        for _ in range(B): read_answer(s,buf)
c0=cpu(); t0=time.time()
ths=[threading.Thread(target=worker,args=(i,)) for i in range(T)]
[t.start() for t in ths]; [t.join() for t in ths]
c1=cpu(); t1=time.time()
print(f"batch={B} threads={T}: server CPU per query {1e6*(c1-c0)/(N*T):.1f} us, wall {t1-t0:.2f}s")
