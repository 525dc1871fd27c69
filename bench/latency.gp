# Send-to-receive latency by percentile: nearchat, the Go peer and the Node
# peer at the same offered load, each curve the median of the rounds at each
# percentile (bench_cdf_median). Variables (gnuplot -e): out, nearchat, go,
# node (their --cdf files), rate (messages/s each member), rounds. The key
# sits bottom right: the curves rise to the right, and leave it empty.
set terminal pngcairo size 900,560 font ",11"
set output out
set title sprintf("fanout 100 rooms x 10 members, %s messages/s each member\n%.0f deliveries/s offered to each server; medians of %s rounds", \
                  rate, rate * 10000, rounds)
set xlabel "percentile"
set ylabel "latency (ms)"
set logscale y
set grid
set key bottom right opaque box
set xtics ("50%%" 0.301, "90%%" 1, "99%%" 2, "99.9%%" 3, "99.99%%" 4)
set xrange [0.3:4.2]
nines(q) = q < 1 ? -log10(1 - q) : 1/0
plot nearchat using (nines($1)):($2 > 0 ? $2 : 0.001) with linespoints lw 2 title "nearchat (durable)", \
     go using (nines($1)):($2 > 0 ? $2 : 0.001) with linespoints lw 2 title "Go peer (gorilla/websocket, in memory)", \
     node using (nines($1)):($2 > 0 ? $2 : 0.001) with linespoints lw 2 title "Node peer (ws, in memory)"
