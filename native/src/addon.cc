// Module entry: registers every group of native functions on the exports object.
#include "common.h"

namespace damselfly {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitCodecs(env, exports);
  InitFsOps(env, exports);
  InitPassthrough(env, exports);
  InitPoll(env, exports);
  InitSocket(env, exports);
  InitVring(env, exports);
  InitFastIo(env, exports);
  InitZran(env, exports);
  return exports;
}

NODE_API_MODULE(damselfly, Init)

}  // namespace damselfly
