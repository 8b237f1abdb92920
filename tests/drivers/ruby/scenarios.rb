# Active Record (Rails 6.1's ORM) on ruby-pg and on the mysql2 gem, run by tests/pg_drivers.rs
# and tests/mysql_drivers.rs through the proxy and directly against the primary; the outputs
# must be equal.
#
# Usage: ruby scenarios.rb SCENARIO [ARGS]   (server under test: SY_HOST, SY_PORT, SY_USER,
# SY_PASSWORD, SY_DB)
#
# `rails THREADS ROUNDS` (PostgreSQL) and `rails_mysql THREADS ROUNDS` (MariaDB): an Active
# Record pool of THREADS connections, each set up as the adapter sets one up, used by THREADS
# threads at once as a Rails application's request threads use it: models created, found and
# updated, transactions committed and rolled back, a unique violation inside one. A plain
# connection beside them must see the server's defaults between rounds.
# - PostgreSQL: client encoding, `SET client_min_messages`, `SET search_path TO
#   ar_app,public`, `SET standard_conforming_strings`, `SET SESSION timezone` and the
#   configured `variables`, each a plain statement, then the type map loaded; statements are
#   prepared once per connection (named `a1`, `a2`, ...).
# - MariaDB: one `SET NAMES utf8mb4 COLLATE ..., @@SESSION.sql_mode = CONCAT(...),
#   @@SESSION.sql_auto_is_null = 0, @@SESSION.wait_timeout = ...` with the configured
#   `variables`.
#
# Prints one fact a line, then END. The harness kills the process after its deadline.

require "active_record"

$stdout.sync = true

def server
  {
    host: ENV.fetch("SY_HOST", "127.0.0.1"),
    port: ENV.fetch("SY_PORT").to_i,
    database: ENV.fetch("SY_DB"),
    username: ENV.fetch("SY_USER"),
    password: ENV["SY_PASSWORD"].to_s.empty? ? nil : ENV["SY_PASSWORD"],
    connect_timeout: 10,
  }
end

class ArItem < ActiveRecord::Base
  self.table_name = "ar_item"
end

# THREADS threads, ROUNDS rounds each, on the established pool; `show` is what each thread's
# session looks like, `plain` what a plain connection's does (a lambda).
def rails_rounds(threads, rounds, show, plain)
  step = Queue.new
  done = Queue.new
  said = Array.new(threads) { [] }
  workers = (0...threads).map do |i|
    Thread.new do
      rounds.times do |r|
        step.pop
        begin
          ActiveRecord::Base.connection_pool.with_connection do |c|
            said[i] << "round #{r}: session #{c.select_rows(show).first.join(' | ')}"
            item = ArItem.create!(who: i, note: "round #{r}")
            found = ArItem.find(item.id)
            said[i] << "round #{r}: found #{found.who} #{found.note}"
            ArItem.transaction do
              ArItem.where(id: item.id).update_all(note: "round #{r} of #{i}")
              ArItem.create!(who: i, note: "kept #{r}")
              raise ActiveRecord::Rollback if (i + r) % 4 == 3
            end
            if (i + r) % 5 == 2
              begin
                ArItem.transaction do
                  ArItem.create!(id: item.id, who: i, note: "duplicate")
                end
              rescue ActiveRecord::RecordNotUnique => e
                said[i] << "round #{r}: duplicate #{e.cause.class} #{c.transaction_open?}"
              end
            end
            said[i] << "round #{r}: count #{ArItem.where(who: i).count} " \
                       "notes #{ArItem.where(who: i).order(:id).pluck(:note).join(',')}"
          end
        rescue => e
          said[i] << "round #{r}: error #{e.class} #{e.message.lines.first.to_s.strip}"
        end
        done.push(i)
      end
    end
  end
  rounds.times do |r|
    threads.times { step.push(r) }
    threads.times { done.pop }
    puts "plain connection, round #{r}: #{plain.call.join(' | ')}"
  end
  workers.each(&:join)
  said.each_with_index { |lines, i| lines.each { |l| puts "thread #{i}: #{l}" } }
  ActiveRecord::Base.connection_pool.disconnect!
end

def scenario_rails(threads, rounds)
  require "pg"
  ActiveRecord::Base.default_timezone = :utc
  ActiveRecord::Base.establish_connection(server.merge(
    adapter: "postgresql",
    pool: threads,
    checkout_timeout: 20,
    encoding: "unicode",
    schema_search_path: "ar_app,public",
    variables: { "statement_timeout" => "15s", "lock_timeout" => "4s" },
  ))
  s = server
  plain = PG.connect(host: s[:host], port: s[:port], dbname: s[:database], user: s[:username],
                     password: s[:password], connect_timeout: 10)
  rails_rounds(threads, rounds,
               "SELECT current_setting('search_path'), current_setting('TimeZone'), " \
               "current_setting('statement_timeout'), current_setting('lock_timeout'), " \
               "current_setting('client_min_messages')",
               -> {
                 plain.exec("SELECT current_setting('search_path'), " \
                            "current_setting('statement_timeout'), " \
                            "current_setting('client_min_messages')").values.first
               })
  plain.close
end

def scenario_rails_mysql(threads, rounds)
  require "mysql2"
  ActiveRecord::Base.default_timezone = :utc
  ActiveRecord::Base.establish_connection(server.merge(
    adapter: "mysql2",
    read_timeout: 30,
    pool: threads,
    checkout_timeout: 20,
    encoding: "utf8mb4",
    collation: "utf8mb4_unicode_ci",
    variables: { "time_zone" => "+02:00", "group_concat_max_len" => 4096 },
  ))
  plain = Mysql2::Client.new(server.merge(read_timeout: 30))
  show = "SELECT @@collation_connection, @@sql_mode, @@sql_auto_is_null, @@wait_timeout, " \
         "@@time_zone, @@group_concat_max_len"
  rails_rounds(threads, rounds, show, -> { plain.query(show, as: :array).first })
  plain.close
end

case ARGV[0]
when "rails"
  scenario_rails(Integer(ARGV[1] || 6), Integer(ARGV[2] || 4))
when "rails_mysql"
  scenario_rails_mysql(Integer(ARGV[1] || 6), Integer(ARGV[2] || 4))
else
  warn "unknown scenario #{ARGV[0]}"
  exit 2
end
puts "END"
