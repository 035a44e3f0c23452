#!/bin/sh
# Runs inside the arm64 root (under qemu-user) as mmdebstrap's last customize hook.
# The payload folder holds: files/ (copied over /), wheels/ (aarch64 wheels), models/ (base models).
set -eu
P=/tmp/hml-payload
stage() { echo "HML-STAGE $1"; }

stage users
getent group gpio >/dev/null || groupadd --system gpio
id hearmylove >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /var/lib/hearmylove \
    --shell /usr/sbin/nologin --user-group --groups audio,gpio hearmylove

stage files
cp -a "$P/files/." /

stage venv
python3 -m venv /opt/hearmylove/venv
# Offline, exactly the wheels resolved on the host (no index, no dependency resolution here).
/opt/hearmylove/venv/bin/pip install --no-index --no-deps --disable-pip-version-check --no-cache-dir -q \
    "$P"/wheels/*.whl
/opt/hearmylove/venv/bin/pip uninstall -y -q pip 2>/dev/null || true
cp "$P/requirements.lock" /opt/hearmylove/requirements.lock

stage firmware
# Write config.txt/cmdline.txt and copy kernel, initrd and device trees now that ROOTPART is set.
for version in $(ls /lib/modules); do
    DEB_MAINT_PARAMS=configure /etc/kernel/postinst.d/z50-raspi-firmware "$version" "/boot/vmlinuz-$version"
done

stage models
mkdir -p /var/lib/hearmylove/models
cp -a "$P/models/." /var/lib/hearmylove/models/
chown -R hearmylove:hearmylove /var/lib/hearmylove
chmod 0750 /var/lib/hearmylove

stage units
systemctl enable systemd-networkd.service systemd-timesyncd.service hearmylove-firstboot.service \
    hearmylove.service wpa_supplicant@wlan0.service
systemctl disable wpa_supplicant.service 2>/dev/null || true
# SSH is off: not installed by default; if added to the package list it stays disabled and keyless.
systemctl disable ssh.service ssh.socket 2>/dev/null || true
rm -f /etc/ssh/ssh_host_*
ln -sf /usr/share/zoneinfo/Etc/UTC /etc/localtime
echo Etc/UTC > /etc/timezone

stage cleanup
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/lib/dpkg/*-old /var/log/*.log /root/.cache
find /opt/hearmylove/venv -name '*.pyc' -path '*/pip/*' -delete 2>/dev/null || true
: > /etc/machine-id
