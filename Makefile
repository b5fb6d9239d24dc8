# Hutch: build and install for one user (default) or for a distribution package.
#
#   make                      build the release binaries
#   make install              install into ~/.local and start the helper's socket unit
#   make uninstall            remove everything `make install` put there
#   make install PREFIX=/usr DESTDIR=pkg/   for packagers (no unit is started)
#
# BINSRC names the folder holding the built `hutch` and `hutch-helper`.

PREFIX ?= $(HOME)/.local
DESTDIR ?=
CARGO_TARGET_DIR ?= target
BINSRC ?= $(CARGO_TARGET_DIR)/release

BINDIR := $(PREFIX)/bin
DATADIR := $(PREFIX)/share
MANDIR := $(DATADIR)/man
ifeq ($(PREFIX),$(HOME)/.local)
UNITDIR ?= $(HOME)/.local/share/systemd/user
else
UNITDIR ?= $(PREFIX)/lib/systemd/user
endif
APP_ID := io.github.hutchbox.Hutch
MANIFEST := $(DATADIR)/hutch/installed-files
ICON_SIZES := 16 24 32 48 64 128 256 512

.PHONY: all install uninstall

all:
	cargo build --release --locked -p hutch -p hutch-helper

# Each installed file is listed in $(MANIFEST), which `uninstall` reads.
install:
	@test -x "$(BINSRC)/hutch" && test -x "$(BINSRC)/hutch-helper" || \
		{ echo "no built binaries in $(BINSRC): run make first" >&2; exit 1; }
	@set -e; root="$(DESTDIR)"; list=$$(mktemp); \
	put() { install -D -m "$$1" "$$2" "$$root$$3"; echo "$$3" >> "$$list"; }; \
	put 0755 "$(BINSRC)/hutch" "$(BINDIR)/hutch"; \
	put 0755 "$(BINSRC)/hutch-helper" "$(BINDIR)/hutch-helper"; \
	tmp=$$(mktemp -d); \
	sed 's|@BINDIR@|$(BINDIR)|g' dist/systemd/hutch-helper.service > "$$tmp/hutch-helper.service"; \
	put 0644 "$$tmp/hutch-helper.service" "$(UNITDIR)/hutch-helper.service"; \
	put 0644 dist/systemd/hutch-helper.socket "$(UNITDIR)/hutch-helper.socket"; \
	sed 's|^Exec=hutch |Exec=$(BINDIR)/hutch |' dist/$(APP_ID).desktop > "$$tmp/$(APP_ID).desktop"; \
	put 0644 "$$tmp/$(APP_ID).desktop" "$(DATADIR)/applications/$(APP_ID).desktop"; \
	put 0644 dist/$(APP_ID).metainfo.xml "$(DATADIR)/metainfo/$(APP_ID).metainfo.xml"; \
	put 0644 dist/icons/$(APP_ID).svg "$(DATADIR)/icons/hicolor/scalable/apps/$(APP_ID).svg"; \
	for s in $(ICON_SIZES); do \
		put 0644 "dist/icons/$${s}x$${s}/$(APP_ID).png" "$(DATADIR)/icons/hicolor/$${s}x$${s}/apps/$(APP_ID).png"; \
	done; \
	"$(BINSRC)/hutch" completions bash > "$$tmp/hutch.bash"; \
	"$(BINSRC)/hutch" completions zsh > "$$tmp/_hutch"; \
	"$(BINSRC)/hutch" completions fish > "$$tmp/hutch.fish"; \
	put 0644 "$$tmp/hutch.bash" "$(DATADIR)/bash-completion/completions/hutch"; \
	put 0644 "$$tmp/_hutch" "$(DATADIR)/zsh/site-functions/_hutch"; \
	put 0644 "$$tmp/hutch.fish" "$(DATADIR)/fish/vendor_completions.d/hutch.fish"; \
	"$(BINSRC)/hutch" manpages "$$tmp/man"; \
	for page in "$$tmp"/man/*.1; do put 0644 "$$page" "$(MANDIR)/man1/$$(basename "$$page")"; done; \
	for t in dist/profiles/*.toml; do put 0644 "$$t" "$(DATADIR)/hutch/profile-templates/$$(basename "$$t")"; done; \
	echo "$(MANIFEST)" >> "$$list"; \
	install -D -m 0644 "$$list" "$$root$(MANIFEST)"; \
	rm -rf "$$tmp" "$$list"; \
	echo "installed $$(wc -l < "$$root$(MANIFEST)") files under $$root$(PREFIX)"
	@if [ -z "$(DESTDIR)" ]; then \
		update-desktop-database -q "$(DATADIR)/applications" 2>/dev/null || true; \
		gtk-update-icon-cache -q -t -f "$(DATADIR)/icons/hicolor" 2>/dev/null || true; \
		if systemctl --user show-environment >/dev/null 2>&1; then \
			systemctl --user daemon-reload && \
			systemctl --user enable --now hutch-helper.socket && \
			echo "the helper starts on demand (systemd user socket hutch-helper.socket)"; \
		else \
			echo "no systemd user manager: the helper will be started by hutch when needed"; \
		fi; \
	fi

uninstall:
	@set -e; root="$(DESTDIR)"; manifest="$$root$(MANIFEST)"; \
	test -f "$$manifest" || { echo "nothing to uninstall: $$manifest is missing" >&2; exit 1; }; \
	if [ -z "$(DESTDIR)" ] && systemctl --user show-environment >/dev/null 2>&1; then \
		systemctl --user disable --now hutch-helper.socket 2>/dev/null || true; \
		systemctl --user stop hutch-helper.service 2>/dev/null || true; \
	fi; \
	files=$$(cat "$$manifest"); \
	for f in $$files; do rm -f "$$root$$f"; done; \
	for f in $$files; do rmdir -p --ignore-fail-on-non-empty "$$(dirname "$$root$$f")" 2>/dev/null || true; done; \
	if [ -z "$(DESTDIR)" ]; then \
		systemctl --user daemon-reload 2>/dev/null || true; \
		update-desktop-database -q "$(DATADIR)/applications" 2>/dev/null || true; \
	fi; \
	echo "removed $$(echo "$$files" | wc -l) files"
