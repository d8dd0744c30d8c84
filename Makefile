# Builds and installs FerroHSM the conventional way, for systems without the
# Debian package (scripts/package):
#
#   make                                  # release build, man pages, completions
#   sudo make install                     # PREFIX=/usr/local by default
#   make install PREFIX=/opt/ferrohsm DESTDIR=/tmp/stage
#   sudo make uninstall                   # same PREFIX/DESTDIR as the install
#
# Lays out what the Debian package holds, under PREFIX: bin/ferrohsm,
# lib/pkcs11/libferrohsm_pkcs11.so (where `ferrohsm` looks for it, relative to
# itself), man pages, shell completions; and a p11-kit registration in
# P11KIT_CONFDIR naming the module by its absolute path. P11KIT_CONFDIR is
# /etc/pkcs11/modules whatever the prefix: the system-wide directory p11-kit
# reads (it does not read <PREFIX>/share/p11-kit). Set P11KIT_CONFDIR= (empty)
# to skip the registration.

PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
PKCS11DIR ?= $(LIBDIR)/pkcs11
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
P11KIT_CONFDIR ?= /etc/pkcs11/modules
CARGO ?= cargo

# Cargo's target directory; `target/` when cargo is not on the PATH (sudo
# resets it): then give TARGET_DIR=… if the build went elsewhere.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(shell $(CARGO) metadata --format-version 1 --no-deps \
	2>/dev/null | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'),$(CURDIR)/target)
RELEASE := $(TARGET_DIR)/release
ASSETS := $(RELEASE)/make-docs
LIB := libferrohsm_pkcs11.so

.PHONY: all build install uninstall clean-assets

all: build

# Cargo decides what is out of date; the docs come from the fresh binary.
build:
	$(CARGO) build --release -p ferrohsm -p ferrohsm-pkcs11
	rm -rf $(ASSETS)
	$(RELEASE)/ferrohsm generate-docs --out $(ASSETS) >/dev/null

# install never runs cargo (it is often run as root): build first.
install:
	@test -f $(RELEASE)/ferrohsm -a -f $(RELEASE)/$(LIB) -a -d $(ASSETS)/man || \
		{ echo "make install: nothing built in $(RELEASE): run 'make' first" >&2; exit 1; }
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(PKCS11DIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	install -m 755 $(RELEASE)/ferrohsm $(DESTDIR)$(BINDIR)/ferrohsm
	install -m 644 $(RELEASE)/$(LIB) $(DESTDIR)$(PKCS11DIR)/$(LIB)
	for page in $(ASSETS)/man/*.1; do \
		gzip -9n -c $$page > $(DESTDIR)$(MANDIR)/man1/$$(basename $$page).gz || exit 1; \
		chmod 644 $(DESTDIR)$(MANDIR)/man1/$$(basename $$page).gz; \
	done
	install -m 644 $(ASSETS)/completions/ferrohsm.bash $(DESTDIR)$(BASHCOMPDIR)/ferrohsm
	install -m 644 $(ASSETS)/completions/_ferrohsm $(DESTDIR)$(ZSHCOMPDIR)/_ferrohsm
	install -m 644 $(ASSETS)/completions/ferrohsm.fish $(DESTDIR)$(FISHCOMPDIR)/ferrohsm.fish
	if [ -n "$(P11KIT_CONFDIR)" ]; then \
		install -d $(DESTDIR)$(P11KIT_CONFDIR) && \
		printf '# FerroHSM PKCS#11 module, registered by make install.\nmodule: %s\n' \
			'$(PKCS11DIR)/$(LIB)' > $(DESTDIR)$(P11KIT_CONFDIR)/ferrohsm.module && \
		chmod 644 $(DESTDIR)$(P11KIT_CONFDIR)/ferrohsm.module; \
	fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/ferrohsm $(DESTDIR)$(PKCS11DIR)/$(LIB) \
		$(DESTDIR)$(MANDIR)/man1/ferrohsm.1.gz $(DESTDIR)$(MANDIR)/man1/ferrohsm-*.1.gz \
		$(DESTDIR)$(BASHCOMPDIR)/ferrohsm $(DESTDIR)$(ZSHCOMPDIR)/_ferrohsm \
		$(DESTDIR)$(FISHCOMPDIR)/ferrohsm.fish
	if [ -n "$(P11KIT_CONFDIR)" ]; then rm -f $(DESTDIR)$(P11KIT_CONFDIR)/ferrohsm.module; fi
	-rmdir $(DESTDIR)$(PKCS11DIR) 2>/dev/null

clean-assets:
	rm -rf $(ASSETS)
