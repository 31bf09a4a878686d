#!/bin/sh
# What "fangen docker fan-250 --network fan-250" prints on the host 172.16.3.4 (slice
# 250.3.4.0/24, underlay MTU 1500): a user-defined Docker network on the fan bridge,
# for "docker run --network fan-250".  Run it on that host only: every host prints
# its own slice.
docker network create --driver bridge --subnet 250.3.4.0/24 --ip-range 250.3.4.0/24 --gateway 250.3.4.1 -o com.docker.network.bridge.name=fan-250 -o com.docker.network.driver.mtu=1480 -o com.docker.network.bridge.enable_icc=true -o com.docker.network.bridge.enable_ip_masquerade=false fan-250
