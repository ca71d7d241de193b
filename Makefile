# make install: kbgp as a host service (binary, systemd unit, example config).
PREFIX ?= /usr/local
DESTDIR ?=

.PHONY: build install test demo
build:
	cargo build --release --locked -p kbgp

install: build
	install -Dm755 target/release/kbgp $(DESTDIR)$(PREFIX)/bin/kbgp
	install -Dm644 deploy/systemd/kbgp.service $(DESTDIR)/etc/systemd/system/kbgp.service
	install -d $(DESTDIR)/etc/kbgp
	install -d $(DESTDIR)$(PREFIX)/share/kbgp/examples
	cp -r examples/. $(DESTDIR)$(PREFIX)/share/kbgp/examples/
	install -Dm644 README.md $(DESTDIR)$(PREFIX)/share/doc/kbgp/README.md
	@echo "Put your configuration in /etc/kbgp (see $(PREFIX)/share/kbgp/examples/seed-003),"
	@echo "then: systemctl daemon-reload && systemctl enable --now kbgp"

test:
	./scripts/test.sh

demo:
	./demo/run.sh
