#!/usr/bin/env bash
# Project-owned copy of shared/redmine-start.sh (same behaviour); used by tests/servers/redmine_server.py.
# redmine-start.sh - throwaway, isolated Redmine servers on 127.0.0.1 for automated tests.
#
# Uses Debian 12's `redmine` package (5.0.4, Rails 6.1, Ruby 3.1) with SQLite and puma.
# Each instance lives entirely in its own directory (DB, attachments, logs, cache, secret),
# runs on its own port, and never touches the package's "default" instance.
#
#   redmine-start.sh install                 install packages if missing (needs root or sudo)
#   redmine-start.sh start DIR PORT [--fresh] create/reuse instance in DIR, start on 127.0.0.1:PORT,
#                                            print the admin API key on stdout (only that), exit 0
#                                            leaving the server running; PID in DIR/server.pid
#   redmine-start.sh stop DIR                stop the server of DIR (by the PID in DIR/server.pid)
#   redmine-start.sh reset DIR               restore the pristine DB in place (~0.02 s, server may keep
#                                            running, no request in flight) and clear attachments
#   redmine-start.sh status DIR              exit 0 and print URL if the server of DIR is up
#   redmine-start.sh DIR PORT                same as start
#
# Environment (all optional):
#   REDMINE_API_KEY=<40 hex>   admin API key to use (default: random per instance, kept in DIR/api_key)
#   REDMINE_LANG=en            language of the default data (trackers, statuses, roles...)
#   REDMINE_LOGIN_REQUIRED=1   1 = anonymous/bad-key requests get 401 (default); 0 = Redmine default
#   REDMINE_THREADS=1          puma threads; >1 gives real concurrency but SQLite "database is locked" 500s
#   REDMINE_START_TIMEOUT=120  seconds to wait for the first HTTP 200
#   REDMINE_CACHE_DIR=${TMPDIR:-/tmp}/redmine-test-cache   where the migrated template DB is cached
#   REDMINE_MAIL_DIR=DIR       deliver mail as files into DIR (one per recipient address) instead of
#                              ActionMailer's :test; what is sent still follows Setting.notified_events
set -euo pipefail

REDMINE_ROOT=/usr/share/redmine
PKGS=(redmine redmine-sqlite puma sqlite3)
CACHE_DIR=${REDMINE_CACHE_DIR:-${TMPDIR:-/tmp}/redmine-test-cache}
LANG_=${REDMINE_LANG:-en}
THREADS=${REDMINE_THREADS:-1}
START_TIMEOUT=${REDMINE_START_TIMEOUT:-120}
LOGIN_REQUIRED=${REDMINE_LOGIN_REQUIRED:-1}

log() { echo "redmine-start: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else die "root (or sudo) needed for: $*"; fi
}

is_installed() {
  local p
  for p in "${PKGS[@]}"; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || return 1
  done
}

do_install() {
  is_installed && return 0
  local t0=$SECONDS apt_log
  apt_log=$(mktemp "${TMPDIR:-/tmp}/redmine-apt.XXXXXX.log")
  log "installing ${PKGS[*]} (log: $apt_log)"
  # Preseed dbconfig-common so nothing is asked. dbconfig-install=false: the package's own 'default'
  # instance gets no database (our instances never use it); saves the ~5 s migration in postinst.
  # (dbconfig-install=true + database-type=sqlite3 also works and gives a migrated default instance.)
  as_root debconf-set-selections <<'EOF'
redmine redmine/current-instances string default
redmine redmine/instances/default/dbconfig-install boolean false
redmine redmine/instances/default/database-type select sqlite3
redmine redmine/instances/default/default-language select en
EOF
  local apt_opts=(-y -q --no-install-recommends -o Dpkg::Options::=--force-confdef
                  -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-unsafe-io)
  if ! apt-cache show redmine >/dev/null 2>&1; then
    as_root apt-get update -qq >>"$apt_log" 2>&1 || true
  fi
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "${PKGS[@]}" >>"$apt_log" 2>&1; then
    log "install failed, retrying after apt-get update"
    as_root apt-get update -qq >>"$apt_log" 2>&1 || true
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "${PKGS[@]}" >>"$apt_log" 2>&1 \
      || { tail -n 30 "$apt_log" >&2; die "apt-get install failed"; }
  fi
  is_installed || die "packages still not installed, see $apt_log"
  log "installed in $((SECONDS - t0))s"
}

redmine_version() { dpkg-query -W -f='${Version}' redmine; }

# Environment every Rails/bundler command of instance $1 runs with.
# REDMINE_INSTANCE selects the Debian multi-tenancy root: $REDMINE_ROOT/instances/<name>.
# A name of enough "../" followed by the absolute DIR resolves to DIR itself (both lexically and
# through the instances -> /var/lib/redmine symlink), so nothing is written under /var/lib/redmine.
inst_env() {
  local d=$1
  echo "RAILS_ENV=production"
  echo "BUNDLE_GEMFILE=$d/Gemfile"
  echo "REDMINE_INSTANCE=../../../../../../../../../..$d"
}

write_instance_files() {
  local d=$1
  mkdir -p "$d"/{config,db,files,log,tmp/cache,tmp/pids,tmp/thumbnails,public/plugin_assets}
  cat >"$d/config/database.yml" <<EOF
production:
  adapter: sqlite3
  database: $d/db/redmine.sqlite3
  encoding: utf8
  timeout: 10000
EOF
  if [ -n "${REDMINE_MAIL_DIR:-}" ]; then
    # ActionMailer's :file delivery appends each mail to MAIL_DIR/<recipient address>.
    cat >"$d/config/configuration.yml" <<EOF
default:
  email_delivery:
    delivery_method: :file
    file_settings:
      location: $REDMINE_MAIL_DIR
EOF
  else
    cat >"$d/config/configuration.yml" <<'EOF'
default:
  email_delivery:
    delivery_method: :test
EOF
  fi
  [ -s "$d/config/secret_key.txt" ] || od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$d/config/secret_key.txt"
  chmod 600 "$d/config/secret_key.txt"
  # Own Gemfile: the package's Gemfile only adds the sqlite3 gem if it can read a sqlite
  # database.yml under /usr/share/redmine/{config,instances/*}, and has no app server.
  local want
  want=$(cat <<'EOF'
eval_gemfile '/usr/share/redmine/Gemfile'
gem 'sqlite3', '~> 1.4.0' unless dependencies.any? { |dep| dep.name == 'sqlite3' }
gem 'puma' unless dependencies.any? { |dep| dep.name == 'puma' }
EOF
)
  if [ ! -f "$d/Gemfile" ] || [ "$(cat "$d/Gemfile")" != "$want" ] || [ ! -s "$d/Gemfile.lock" ] \
     || [ "$d/Gemfile.lock" -ot /var/lib/redmine/Gemfile.lock ]; then
    printf '%s\n' "$want" >"$d/Gemfile"
    rm -f "$d/Gemfile.lock"
    (cd "$REDMINE_ROOT" && env $(inst_env "$d") bundle lock --local >"$d/log/bundle.log" 2>&1) \
      || { cat "$d/log/bundle.log" >&2; die "bundle lock failed"; }
  fi
}

# Runs inside `rails runner`: migrate, load default data, configure, print admin API key.
SETUP_RB=$(cat <<'EOF'
ActiveRecord::Migration.verbose = false
ActiveRecord::Base.connection.migration_context.migrate
ActiveRecord::Base.descendants.each(&:reset_column_information)
Redmine::DefaultData::Loader.load(ENV['REDMINE_LANG'] || 'en') if Redmine::DefaultData::Loader.no_data?
Setting.rest_api_enabled = '1'
Setting.notified_events = []          # no mail jobs (they also contend for the SQLite lock)
Setting.login_required = ENV['REDMINE_LOGIN_REQUIRED'] == '0' ? '0' : '1'
admin = User.find_by_login('admin')
admin.api_token || Token.create!(user: admin, action: 'api')
puts admin.reload.api_key
EOF
)

# Template DB: migrated + default data, cached per package version and language.
ensure_template() {
  local ver tpl tdir t0=$SECONDS
  ver=$(redmine_version)
  tpl="$CACHE_DIR/redmine-${ver}-${LANG_}-lr${LOGIN_REQUIRED}.sqlite3"
  mkdir -p "$CACHE_DIR"
  exec 9>"$CACHE_DIR/.lock"
  flock 9
  if [ ! -s "$tpl" ]; then
    tdir=$(mktemp -d "$CACHE_DIR/build.XXXXXX")
    write_instance_files "$tdir"
    printf '%s\n' "$SETUP_RB" >"$tdir/setup.rb"
    (cd "$REDMINE_ROOT" && env $(inst_env "$tdir") REDMINE_LANG="$LANG_" REDMINE_LOGIN_REQUIRED="$LOGIN_REQUIRED" \
        bin/rails runner "$tdir/setup.rb" >"$tdir/log/setup.out" 2>&1) \
      || { tail -n 30 "$tdir/log/setup.out" >&2; die "template DB setup failed (see $tdir)"; }
    sqlite3 "$tdir/db/redmine.sqlite3" 'PRAGMA journal_mode=DELETE; VACUUM;' >/dev/null
    mv "$tdir/db/redmine.sqlite3" "$tpl.tmp" && mv "$tpl.tmp" "$tpl"
    rm -rf "$tdir"
    log "built template DB in $((SECONDS - t0))s: $tpl"
  fi
  flock -u 9
  exec 9>&-
  echo "$tpl"
}

create_db() {
  local d=$1 tpl key
  tpl=$(ensure_template)
  key=${REDMINE_API_KEY:-}
  [ -n "$key" ] || key=$(cat "$d/api_key" 2>/dev/null || true)
  [ -n "$key" ] || key=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
  [[ $key =~ ^[0-9a-f]{40}$ ]] || die "REDMINE_API_KEY must be 40 lowercase hex chars"
  cp "$tpl" "$d/db/pristine.sqlite3.tmp"
  sqlite3 "$d/db/pristine.sqlite3.tmp" \
    "UPDATE tokens SET value='$key' WHERE action='api' AND user_id=(SELECT id FROM users WHERE login='admin');"
  mv "$d/db/pristine.sqlite3.tmp" "$d/db/pristine.sqlite3"
  rm -f "$d/db/redmine.sqlite3" "$d/db/redmine.sqlite3-journal"
  cp "$d/db/pristine.sqlite3" "$d/db/redmine.sqlite3"
  echo "$key" >"$d/api_key"
  redmine_version >"$d/redmine-version"
  find "$d/files" "$d/tmp/cache" "$d/tmp/thumbnails" -mindepth 1 -delete 2>/dev/null || true
}

server_pid() {  # prints the PID if DIR's server is alive
  local d=$1 pid
  pid=$(cat "$d/server.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q puma || return 1
  echo "$pid"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

http_code() {  # $1 url $2 key
  curl -s -o /dev/null -m 10 -w '%{http_code}' -H "X-Redmine-API-Key: $2" "$1" 2>/dev/null || true
}

cmd_start() {
  local d=$1 port=$2 fresh=${3:-}
  [[ $port =~ ^[0-9]+$ ]] || die "bad port: $port"
  mkdir -p "$d"
  d=$(cd "$d" && pwd -P)
  [[ $d =~ ^[A-Za-z0-9_./+-]+$ ]] || die "DIR must not contain spaces or special characters: $d"
  do_install
  local pid key t0
  if pid=$(server_pid "$d"); then
    if [ -z "$fresh" ] && [ "$(cat "$d/port" 2>/dev/null)" = "$port" ] \
       && { [ -z "${REDMINE_API_KEY:-}" ] || [ "$REDMINE_API_KEY" = "$(cat "$d/api_key")" ]; } \
       && [ "$(http_code "http://127.0.0.1:$port/users/current.json" "$(cat "$d/api_key")")" = 200 ]; then
      log "already running (pid $pid) at http://127.0.0.1:$port"
      cat "$d/api_key"; return 0
    fi
    cmd_stop "$d"
  fi
  port_busy "$port" && die "port $port on 127.0.0.1 is already in use"
  write_instance_files "$d"
  if [ -n "$fresh" ] || [ ! -s "$d/db/redmine.sqlite3" ] || [ ! -s "$d/db/pristine.sqlite3" ] \
     || [ "$(cat "$d/redmine-version" 2>/dev/null)" != "$(redmine_version)" ] \
     || { [ -n "${REDMINE_API_KEY:-}" ] && [ "$REDMINE_API_KEY" != "$(cat "$d/api_key" 2>/dev/null)" ]; }; then
    create_db "$d"
  fi
  key=$(cat "$d/api_key")
  t0=$(date +%s.%N)
  (
    cd "$REDMINE_ROOT"
    exec env $(inst_env "$d") setsid bundle exec puma -e production -b "tcp://127.0.0.1:$port" \
      -t "$THREADS:$THREADS" --tag "redmine-test:$d" --pidfile "$d/tmp/pids/puma.pid" config.ru \
      >>"$d/log/server.log" 2>&1 </dev/null
  ) &
  pid=$!
  echo "$pid" >"$d/server.pid"
  echo "$port" >"$d/port"
  echo "http://127.0.0.1:$port" >"$d/url"
  local code=000
  while :; do
    code=$(http_code "http://127.0.0.1:$port/users/current.json" "$key")
    [ "$code" = 200 ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$d/log/server.log" >&2; rm -f "$d/server.pid"; die "server exited during startup"
    fi
    if awk -v t0="$t0" -v lim="$START_TIMEOUT" -v now="$(date +%s.%N)" 'BEGIN{exit !(now-t0>lim)}'; then
      tail -n 30 "$d/log/server.log" >&2; cmd_stop "$d"; die "no HTTP 200 within ${START_TIMEOUT}s (last: $code)"
    fi
    sleep 0.1
  done
  # puma's own pidfile is authoritative (same PID unless setsid had to fork)
  if [ -s "$d/tmp/pids/puma.pid" ] && [ "$(cat "$d/tmp/pids/puma.pid")" != "$pid" ]; then
    pid=$(cat "$d/tmp/pids/puma.pid"); echo "$pid" >"$d/server.pid"
  fi
  log "up at http://127.0.0.1:$port (pid $pid) after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s"
  echo "$key"
}

cmd_stop() {
  local d=$1 pid i
  d=$(cd "$d" 2>/dev/null && pwd -P) || { log "no such dir: $1"; return 0; }
  if pid=$(server_pid "$d"); then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then log "pid $pid ignored TERM, sending KILL"; kill -KILL "$pid" 2>/dev/null || true; fi
    log "stopped pid $pid"
  else
    log "not running: $d"
  fi
  rm -f "$d/server.pid" "$d/tmp/pids/puma.pid"
}

cmd_reset() {
  local d=$1
  d=$(cd "$d" && pwd -P)
  [ -s "$d/db/pristine.sqlite3" ] || die "no instance in $d (run start first)"
  local t0=$SECONDS
  # SQLite online-backup API: safe while the server is running (no request must be in flight).
  sqlite3 -cmd '.timeout 10000' "$d/db/redmine.sqlite3" ".restore '$d/db/pristine.sqlite3'"
  find "$d/files" "$d/tmp/cache" "$d/tmp/thumbnails" -mindepth 1 -delete 2>/dev/null || true
  log "reset done in $((SECONDS - t0))s"
}

cmd_status() {
  local d pid
  d=$(cd "$1" 2>/dev/null && pwd -P) || exit 1
  pid=$(server_pid "$d") || { log "not running"; exit 1; }
  log "running pid $pid"; cat "$d/url"
}

case "${1:-}" in
  install) do_install ;;
  start)   [ $# -ge 3 ] || usage; cmd_start "$2" "$3" "${4:+fresh}" ;;
  stop)    [ $# -ge 2 ] || usage; cmd_stop "$2" ;;
  reset)   [ $# -ge 2 ] || usage; cmd_reset "$2" ;;
  status)  [ $# -ge 2 ] || usage; cmd_status "$2" ;;
  ""|-h|--help|help) usage ;;
  *)       [ $# -ge 2 ] || usage; cmd_start "$1" "$2" "${3:+fresh}" ;;
esac
