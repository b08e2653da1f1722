#!/usr/bin/python3
"""A subscriber that keeps its MQTT session through a server crash, for the hub's crash tests:
Eclipse Paho (Debian's python3-paho-mqtt), MQTT 3.1.1 with clean session 0, which reconnects by
itself and keeps its QoS 2 state in memory across reconnections, as a device's client does.

usage: mqtt_count_sub.py PORT CA CERT KEY CLIENT_ID TOPIC QOS OUT SECONDS

Subscribes to TOPIC at QOS on its first connection, and on a later one only when the server has
no session for it (session present 0: the subscription must come back with the session),
appends the payload of every message matching TOPIC to OUT as one line (flushed), reconnects
whenever the connection ends, and exits after SECONDS. Prints one line: "connects=N messages=N".
"""
import ssl
import sys
import time

import paho.mqtt.client as mqtt


def main():
    port, ca, cert, key, cid, topic = sys.argv[1:7]
    qos, out_path, seconds = int(sys.argv[7]), sys.argv[8], float(sys.argv[9])
    out = open(out_path, "a")
    counts = {"connects": 0, "messages": 0}

    def on_connect(client, userdata, flags, rc):
        if rc != 0:
            return
        counts["connects"] += 1
        if counts["connects"] == 1 or not flags.get("session present"):
            client.subscribe(topic, qos)

    def on_message(client, userdata, msg):
        if not mqtt.topic_matches_sub(topic, msg.topic):
            return  # what the session still held from an earlier run of the test
        out.write(msg.payload.decode() + "\n")
        out.flush()
        counts["messages"] += 1

    c = mqtt.Client(client_id=cid, clean_session=False, protocol=mqtt.MQTTv311)
    c.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
    c.tls_insecure_set(True)  # the hub's name is not what the test dials; the chain is checked
    c.max_inflight_messages_set(64)
    c.reconnect_delay_set(1, 1)
    c.on_connect = on_connect
    c.on_message = on_message
    end = time.time() + seconds
    connected = False
    while time.time() < end:
        # Paho's own loop thread dies on some TLS errors of a killed peer: this loop survives
        # them, and reconnect() keeps the session's state (its QoS 2 messages) as it should.
        try:
            if not connected:
                if counts["connects"] == 0:
                    c.connect("127.0.0.1", int(port), keepalive=30)
                else:
                    c.reconnect()
                connected = True
            if c.loop(0.1) != mqtt.MQTT_ERR_SUCCESS:
                connected = False
        except (OSError, ssl.SSLError):
            connected = False
        if not connected:
            time.sleep(0.2)
    try:
        c.disconnect()
        c.loop(0.1)
    except (OSError, ssl.SSLError):
        pass
    print("connects=%d messages=%d" % (counts["connects"], counts["messages"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
