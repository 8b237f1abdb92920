# Active Record (Rails' ORM, on ruby-pg), run by tests/pg_drivers.rs through the proxy and
# directly against the primary; the outputs must be equal.
#
# Usage: ruby scenarios.rb SCENARIO [ARGS]   (server under test: SY_HOST, SY_PORT, SY_USER,
# SY_PASSWORD, SY_DB)
#
# `rails THREADS ROUNDS`: an Active Record pool of THREADS connections, each set up as the
# PostgreSQL adapter sets one up (client encoding, `SET client_min_messages`, `SET
# search_path TO ar_app,public`, `SET standard_conforming_strings`, `SET SESSION timezone`
# and the configured `variables`, each a plain statement; its type map loaded), used by
# THREADS threads at once as a Rails application's request threads use it: models created,
# found and updated through prepared statements (named `a1`, `a2`, ... prepared once per
# connection), transactions committed and rolled back, a unique violation inside one. A plain
# connection beside them must see the server's defaults between rounds.
#
# Prints one fact a line, then END. The harness kills the process after its deadline.

require "active_record"
require "pg"

$stdout.sync = true

def target
  {
    adapter: "postgresql",
    host: ENV.fetch("SY_HOST", "127.0.0.1"),
    port: ENV.fetch("SY_PORT").to_i,
    database: ENV.fetch("SY_DB"),
    username: ENV.fetch("SY_USER"),
    password: ENV["SY_PASSWORD"].to_s.empty? ? nil : ENV["SY_PASSWORD"],
    connect_timeout: 10,
  }
end

def plain_connection
  PG.connect(host: target[:host], port: target[:port], dbname: target[:database],
             user: target[:username], password: target[:password], connect_timeout: 10)
end

class ArItem < ActiveRecord::Base
  self.table_name = "ar_item"
end

def scenario_rails(threads, rounds)
  ActiveRecord::Base.default_timezone = :utc
  ActiveRecord::Base.establish_connection(target.merge(
    pool: threads,
    checkout_timeout: 20,
    encoding: "unicode",
    schema_search_path: "ar_app,public",
    variables: { "statement_timeout" => "15s", "lock_timeout" => "4s" },
  ))
  plain = plain_connection
  step = Queue.new
  done = Queue.new
  said = Array.new(threads) { [] }
  workers = (0...threads).map do |i|
    Thread.new do
      rounds.times do |r|
        step.pop
        begin
          ActiveRecord::Base.connection_pool.with_connection do |c|
            s = c.select_rows("SELECT current_setting('search_path'), current_setting('TimeZone'), " \
                              "current_setting('statement_timeout'), current_setting('lock_timeout'), " \
                              "current_setting('client_min_messages')").first
            said[i] << "round #{r}: session #{s.join(' | ')}"
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
    v = plain.exec("SELECT current_setting('search_path'), current_setting('statement_timeout'), " \
                   "current_setting('client_min_messages')").values.first
    puts "plain connection, round #{r}: #{v.join(' | ')}"
  end
  workers.each(&:join)
  said.each_with_index { |lines, i| lines.each { |l| puts "thread #{i}: #{l}" } }
  ActiveRecord::Base.connection_pool.disconnect!
  plain.close
end

case ARGV[0]
when "rails"
  scenario_rails(Integer(ARGV[1] || 6), Integer(ARGV[2] || 4))
else
  warn "unknown scenario #{ARGV[0]}"
  exit 2
end
puts "END"
