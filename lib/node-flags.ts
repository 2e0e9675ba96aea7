// Node options qubesd runs with. qubesd serves many tiny calls, each leaving
// some garbage in the young generation. Measured with 1000 qubes over 20000
// property.Get calls (scavenge count and total GC time, --trace-gc):
// semi-space 2 MB: 177 scavenges, 1000-1450 ms, 87-92 MB resident;
// 4 MB: 89 scavenges, 735-1220 ms, 93 MB; 8 MB: 44 scavenges, 1070-2300 ms,
// 100 MB; V8's default: 21 scavenges, 1860 ms, 114 MB. 4 MB costs least in
// GC and keeps resident memory under 100 MB. Measured again once each call's
// objects died young (they had been kept to the next full collection, see
// qubesd/server.ts), GC pause per property.Get call with 1000 qubes over
// 15000 calls: 1 MB 15 us, 2 MB 14 us, 4 MB 11 us, 8 MB 10 us, V8's default
// 14 us; 4 MB stays (8 MB commits 8 MB more for 1 us). They must be given on node's
// command line (V8 sizes its heap at start), so every launcher of qubesd
// (bin/qubesd's #! line, qubes-stack, the systemd unit, the tests) takes them
// from here.
// The old generation's growth is fixed at 50% over what survives a full
// collection: V8's own factor follows how little time GC takes, and once the
// per-call path got cheaper it let the heap grow to 111-114 MB resident with
// 1000 qubes before collecting (the bench's call sequence, 3 runs), against
// 82-84 MB with the fixed factor. A full collection of that heap then comes
// every few seconds under full load, at 10-20 ms each.
export const QUBESD_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4', '--heap-growing-percent=50'];

// Node options the REST gateway runs with. A disk moving through the gateway
// arrives in 64 KiB buffers (one per socket read); the few that happen to be
// alive at two scavenges are promoted, and each drags its 64 KiB into the old
// generation's count. With a 14 MB heap V8 then ran a full mark-compact every
// 1.5 MB or so: 17-27 per 512 MiB PUT and 18-27 per GET, 150-400 ms of the
// gateway's time (--trace-gc, 3 runs each). Starting the old generation at
// 64 MB leaves room for that churn: 0-1 mark-compacts per transfer, the
// gateway's CPU per 512 MiB GET 1500-2100 ms -> 670-1110 ms. V8 sizes its heap
// at start, so every launcher of qubes-rest (bin/qubes-rest's #! line,
// qubes-stack, the benches) takes them from here.
export const REST_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64'];
