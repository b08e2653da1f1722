# Sourced by the keyfleet-sim benchmarks (fleet_sim.sh, rollout_sim.sh): with KF and SIM set,
# `sim_deployment DIR` makes a deployment in DIR/d on free loopback ports PP (provisioning) and
# HP (the hub), with one hub, the per-address limits lifted (the whole simulated fleet comes from
# one address; a real fleet has many), and the simulator's factory CA (DIR/sim) enrolled as the
# verified group "sim".
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
sim_deployment() {
    PP=$(free_port)
    HP=$(free_port)
    "$KF" --dir "$1/d" init >/dev/null
    "$KF" --dir "$1/d" hub add --name hub-1 --endpoint "127.0.0.1:$HP" >/dev/null
    sed -i "/^\[provisioning\]/,/^\[/ s/^listen = .*/listen = 127.0.0.1:$PP/; \
/^\[hub\]/,\$ s/^listen = .*/listen = 127.0.0.1:$HP/; s/^rate_per_ip = .*/rate_per_ip = 0/; \
s/^max_handshakes_per_ip = .*/max_handshakes_per_ip = 1000000/; s/^max_handshakes_per_net = .*/max_handshakes_per_net = 1000000/; \
s/^max_connections_per_net = .*/max_connections_per_net = 1000000/; s/^connect_rate_per_ip = .*/connect_rate_per_ip = 0/; s/^max_connections_per_ip = .*/max_connections_per_ip = 100000/; s/^flap_connects = .*/flap_connects = 1000000/; \
s/^msg_rate = .*/msg_rate = 0/; s/^byte_rate = .*/byte_rate = 0/" "$1/d/keyfleet.conf"
    "$SIM" --make-factory-ca --dir "$1/sim" >/dev/null
    code=$("$KF" --dir "$1/d" --json enrollment group create --name sim --ca "$1/sim/factory-ca.pem" |
        sed -n 's/.*"verification_code": *"\([^"]*\)".*/\1/p')
    openssl req -new -key "$1/sim/factory-ca.key" -subj "/CN=$code" -out "$1/v.csr" 2>/dev/null
    openssl x509 -req -in "$1/v.csr" -CA "$1/sim/factory-ca.pem" -CAkey "$1/sim/factory-ca.key" \
        -days 1 -out "$1/v.pem" 2>/dev/null
    "$KF" --dir "$1/d" enrollment group verify --name sim --cert "$1/v.pem" >/dev/null
}
