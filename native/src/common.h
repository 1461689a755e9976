// Shared helpers for the Damselfly addon: errors that cross into JavaScript as SysError
// {code, errno, syscall}, and argument decoding. No protocol policy lives in C++.
#pragma once

#include <napi.h>

#include <cerrno>
#include <cstdint>
#include <string>

namespace damselfly {

// Symbolic name of an errno value ("ENOENT"); "EUNKNOWN" when not known.
const char* ErrnoName(int err);

// A JavaScript Error carrying code/errno/syscall, like Node's own system errors.
Napi::Error SysError(Napi::Env env, int err, const char* syscall, const std::string& detail = "");

// Throws a SysError for the current errno and returns an empty value.
[[noreturn]] void ThrowSys(Napi::Env env, const char* syscall, const std::string& detail = "");

// A path argument: a JavaScript string (UTF-8) or a Buffer of raw bytes (names need not be UTF-8).
std::string PathArg(const Napi::Value& v, const char* what);

// A non-negative integer argument below 2^53, checked.
int64_t IntArg(const Napi::Value& v, const char* what);

// A Uint8Array argument (a Buffer is one), checked.
Napi::Uint8Array U8Arg(const Napi::Value& v, const char* what);

void InitCodecs(Napi::Env env, Napi::Object exports);
void InitFsOps(Napi::Env env, Napi::Object exports);
void InitPassthrough(Napi::Env env, Napi::Object exports);
void InitPoll(Napi::Env env, Napi::Object exports);
void InitSocket(Napi::Env env, Napi::Object exports);
void InitVring(Napi::Env env, Napi::Object exports);
void InitFastIo(Napi::Env env, Napi::Object exports);
void InitZran(Napi::Env env, Napi::Object exports);

}  // namespace damselfly
