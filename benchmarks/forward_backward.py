import time, numpy as np
from numlp import Sequential, Dense, ReLU, SoftmaxCrossEntropy
rng = np.random.default_rng(0)
x = rng.random((60000, 784), dtype=np.float32); y = rng.integers(0, 10, 60000)
m = Sequential([Dense(784,256), ReLU(), Dense(256,10)], seed=0)
loss = SoftmaxCrossEntropy()
def fb():
    out = m._forward(x, True); loss.forward(out, y); m.backward(loss.backward())
fb()
ts=[]
for _ in range(5):
    t=time.perf_counter(); fb(); ts.append(time.perf_counter()-t)
med = float(np.median(ts))
# forward: 2*N*(784*256+256*10); backward: dW1 (2*N*784*256), dW2 (2N*256*10), dx2 (2N*256*10); first layer skips dx
N=60000
flops = 2*N*(784*256+256*10) + 2*N*784*256 + 2*N*256*10*2
a = rng.random((4096,4096), dtype=np.float32); b = rng.random((4096,4096), dtype=np.float32)
a@b
mt=[]
for _ in range(5):
    t=time.perf_counter(); a@b; mt.append(time.perf_counter()-t)
ceil = 2*4096**3/np.median(mt)/1e9
print(f"fwd+bwd (60000,784) 784-256-10: median {med:.3f}s of {[round(t,3) for t in ts]}; {flops/1e9:.1f} GFLOP -> {flops/med/1e9:.1f} GFLOP/s; 4096^2 matmul ceiling {ceil:.1f} GFLOP/s ({flops/med/1e9/ceil:.0%})")
