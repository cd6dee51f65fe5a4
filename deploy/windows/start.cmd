@echo off
rem Start lanchat from this release folder (Windows).
rem Settings are environment variables (CONFIG.md); data goes to .\data.
rem Hosts beyond loopback (CHAT_BROADCAST, a Postgres or Redis host) go in
rem LANCHAT_ALLOW_NET, e.g. set LANCHAT_ALLOW_NET=192.168.0.255,db.lan:5432
rem (lanchat.exe has its permissions built in: rebuild it with
rem "deno task release --allow-net-extra ..." instead).
rem As a service: run this file from the Task Scheduler "At startup" as a
rem dedicated local user, or wrap it with a service manager (see DEPLOY.md).
setlocal
cd /d "%~dp0"
if not exist data mkdir data
if exist lanchat.exe (
  lanchat.exe %*
  exit /b %ERRORLEVEL%
)
set "NET=0.0.0.0,127.0.0.1,127.255.255.255"
if defined LANCHAT_ALLOW_NET set "NET=%NET%,%LANCHAT_ALLOW_NET%"
set "ENVS=HOST,PORT,CHAT_DATA,CHAT_DB,CHAT_BUS,CHAT_UDP_PORT,CHAT_BROADCAST,CHAT_SECRET,CHAT_NODE_ID,CHAT_ORIGINS,CHAT_UPLOAD_MAX_BYTES,CHAT_BODY_MAX_BYTES,CHAT_TOKEN_TTL,CHAT_GROUPS_PER_USER,CHAT_ALLOW_STRANGERS,CHAT_DURABLE_ACKS,CHAT_LOG_LEVEL,CHAT_METRICS_ADDR,CHAT_MSG_RATE,CHAT_CONNECT_RATE,CHAT_USER_CONNECTIONS,CHAT_LOGIN_ATTEMPTS,CHAT_LOGIN_IP_ATTEMPTS,CHAT_REGISTER_IP_ATTEMPTS,CHAT_LOOKUP_RATE,CHAT_FRIEND_ADDS,CHAT_GROUP_JOINS,CHAT_UPLOAD_QUOTA_BYTES,CHAT_UPLOAD_CONCURRENCY,CHAT_TRUSTED_PROXIES,CHAT_IDLE_TIMEOUT,PGBINARY,PGREPLICATION,REDIS_DEBUG_MAINTENANCE,REDIS_EMIT_DIAGNOSTICS"
set "DENO=deno"
where deno >nul 2>nul || set "DENO=npx -y deno@2.9.6"
%DENO% run --unstable-net --no-prompt --v8-flags=--max-semi-space-size=4 --allow-net=%NET% --allow-read=./static,./templates,./data,./lib --allow-write=./data --allow-env=%ENVS% server.js %*
exit /b %ERRORLEVEL%
